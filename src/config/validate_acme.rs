//! Semantic checks on `[proxy.tls.acme]`: a directory URL the client can reach over HTTPS, a
//! contact that is an address, challenges listed once each. The `ca_roots` files are read by
//! `parse` (see `check_tls_files` in mod.rs), which knows the config file's directory.

use super::ConfigError;
use super::types::AcmeConfig;

pub(super) fn validate_acme(acme: &AcmeConfig) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| Err(ConfigError::at_key(key, message));
    match acme.directory.parse::<http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
        Ok(_) => {
            return fail(
                "proxy.tls.acme.directory",
                format!(
                    "{:?} is not an https:// URL; ACME directories are served over HTTPS (RFC 8555 §6.1)",
                    acme.directory
                ),
            );
        }
        Err(e) => {
            return fail(
                "proxy.tls.acme.directory",
                format!("{:?} is not a URL: {e}", acme.directory),
            );
        }
    }
    if let Some(email) = &acme.email {
        let ok = email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && domain.contains('.') && !domain.ends_with('.')
        }) && !email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',');
        if !ok {
            return fail(
                "proxy.tls.acme.email",
                format!("{email:?} is not an email address (user@example.com)"),
            );
        }
    }
    if acme.challenges.is_empty() {
        return fail(
            "proxy.tls.acme.challenges",
            "no challenge: list \"tls-alpn-01\", \"http-01\" or both".into(),
        );
    }
    for (i, c) in acme.challenges.iter().enumerate() {
        if acme.challenges[..i].contains(c) {
            return fail(
                "proxy.tls.acme.challenges",
                format!("{:?} is listed twice", c.name()),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn error(acme: &str) -> String {
        let text = format!("[proxy.tls]\nlisten = \"127.0.0.1:0\"\n[proxy.tls.acme]\n{acme}\n");
        parse(&text, None).unwrap_err().to_string()
    }

    #[test]
    fn bad_acme_keys_are_named_with_their_line() {
        let e = error("directory = \"http://ca.test/dir\"");
        assert!(
            e.contains("line 4") && e.contains("proxy.tls.acme.directory"),
            "{e}"
        );
        assert!(e.contains("not an https:// URL"), "{e}");
        let e = error("email = \"ops\"");
        assert!(
            e.contains("proxy.tls.acme.email") && e.contains("not an email"),
            "{e}"
        );
        let e = error("challenges = []");
        assert!(e.contains("proxy.tls.acme.challenges"), "{e}");
        let e = error("challenges = [\"dns-01\"]");
        assert!(e.contains("line 4") && e.contains("dns-01"), "{e}");
        let e = error("challenges = [\"http-01\", \"http-01\"]");
        assert!(e.contains("listed twice"), "{e}");
        let e = error("directroy = \"https://ca.test/dir\"");
        assert!(e.contains("line 4") && e.contains("directroy"), "{e}");
    }

    #[test]
    fn acme_alone_is_enough_for_a_tls_listener_and_defaults_apply() {
        let text = "[proxy.tls]\nlisten = \"127.0.0.1:0\"\n[proxy.tls.acme]\nemail = \"ops@example.com\"\n";
        let c = parse(text, None).unwrap();
        let acme = c.proxy.tls.unwrap().acme.unwrap();
        assert_eq!(acme.directory, crate::config::LETS_ENCRYPT_DIRECTORY);
        assert_eq!(
            acme.challenges,
            [
                crate::config::AcmeChallenge::TlsAlpn01,
                crate::config::AcmeChallenge::Http01
            ]
        );
    }
}
