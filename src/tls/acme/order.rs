//! One order for one name, from the new order to the certificate chain: pick a challenge the
//! CA offers (in `challenges` order), put its answer up, tell the CA, wait for the validation,
//! finalize with a fresh key's CSR (rcgen), download the chain. The answers come down again on
//! every way out (`Answers`'s `Drop`).

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, Problem,
    RetryPolicy,
};

use super::AcmeChallenge;
use super::challenge::{Http01, alpn_certificate};
use crate::tls::CertStore;

/// Why an order failed: the CA's problem document when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `urn:ietf:params:acme:error:...`, when the CA said.
    pub problem: Option<String>,
    pub detail: String,
}

impl Failure {
    fn new(detail: impl Into<String>) -> Failure {
        Failure {
            problem: None,
            detail: detail.into(),
        }
    }

    fn from_problem(p: &Problem) -> Failure {
        let mut detail = p.detail.clone().unwrap_or_else(|| "no detail".into());
        for sub in &p.subproblems {
            if let Some(d) = &sub.detail {
                detail.push_str("; ");
                detail.push_str(d);
            }
        }
        Failure {
            problem: p.r#type.clone(),
            detail,
        }
    }
}

impl From<instant_acme::Error> for Failure {
    fn from(e: instant_acme::Error) -> Failure {
        match e {
            instant_acme::Error::Api(p) => Failure::from_problem(&p),
            other => Failure::new(other.to_string()),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.problem {
            Some(p) => write!(f, "{p}: {}", self.detail),
            None => f.write_str(&self.detail),
        }
    }
}

/// A certificate fresh from the CA, PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Where challenge answers go up.
#[derive(Clone)]
pub struct Responders {
    pub store: CertStore,
    pub http01: Arc<Http01>,
}

/// The answers put up for one order; taken down when it ends, however it ends.
struct Answers<'a> {
    responders: &'a Responders,
    alpn: Vec<String>,
    tokens: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for name in &self.alpn {
            self.responders.store.set_challenge(name, None);
        }
        for token in &self.tokens {
            self.responders.http01.remove(token);
        }
    }
}

/// How long the CA gets to validate and to issue.
const VALIDATION_WAIT: Duration = Duration::from_secs(90);

pub async fn order(
    account: &Account,
    name: &str,
    challenges: &[AcmeChallenge],
    responders: &Responders,
) -> Result<Issued, Failure> {
    let ids = [Identifier::Dns(name.to_string())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let mut answers = Answers {
        responders,
        alpn: Vec::new(),
        tokens: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(Failure::new(format!(
                    "the CA's authorization for {name} is {other:?}"
                )));
            }
        }
        let offered: Vec<ChallengeType> =
            authz.challenges.iter().map(|c| c.r#type.clone()).collect();
        let Some(kind) = challenges
            .iter()
            .copied()
            .find(|c| offered.contains(&challenge_type(*c)))
        else {
            return Err(Failure::new(format!(
                "the CA offers none of the configured challenges ({}) for {name}; it offers {offered:?}",
                challenges
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let mut challenge = authz
            .challenge(challenge_type(kind))
            .expect("the CA offers it: checked above");
        let key_authorization = challenge.key_authorization();
        match kind {
            AcmeChallenge::TlsAlpn01 => {
                let (chain, key) = alpn_certificate(name, key_authorization.digest().as_ref())
                    .map_err(|e| Failure::new(format!("TLS-ALPN-01 certificate: {e}")))?;
                let key = responders
                    .store
                    .certified_key(chain.as_bytes(), key.as_bytes(), true)
                    .map_err(Failure::new)?;
                responders.store.set_challenge(name, Some(Arc::new(key)));
                answers.alpn.push(name.to_string());
            }
            AcmeChallenge::Http01 => {
                responders
                    .http01
                    .insert(&challenge.token, key_authorization.as_str());
                answers.tokens.push(challenge.token.clone());
            }
        }
        challenge.set_ready().await?;
    }
    let retries = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(VALIDATION_WAIT);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(validation_failure(&mut order, name).await);
    }
    // The validations are done: nothing is answered past this point.
    drop(answers);
    let key = rcgen::KeyPair::generate().map_err(|e| Failure::new(format!("key: {e}")))?;
    let csr = rcgen::CertificateParams::new(vec![name.to_string()])
        .and_then(|p| p.serialize_request(&key))
        .map_err(|e| Failure::new(format!("CSR: {e}")))?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&retries).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The CA's reason for an invalid order: the first challenge error it recorded.
async fn validation_failure(order: &mut instant_acme::Order, name: &str) -> Failure {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await
            && let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref())
        {
            return Failure::from_problem(problem);
        }
    }
    Failure::new(format!("the CA marked the order for {name} invalid"))
}

fn challenge_type(c: AcmeChallenge) -> ChallengeType {
    match c {
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        AcmeChallenge::Http01 => ChallengeType::Http01,
    }
}
