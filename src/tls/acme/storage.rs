//! Where the account and the certificates are kept: one small interface (`Storage`), so that
//! several replicas can later share one store; `Dir` keeps them as files under the state
//! directory, readable by wakeway's user only.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A flat key -> bytes store. Keys are relative paths made of DNS names and fixed words
/// (`account.json`, `certs/app.example.com.pem`): never a `..` or a leading `/`.
pub trait Storage: Send + Sync {
    fn load(&self, key: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Replaces the value whole: a reader sees the old bytes or the new, never half.
    fn store(&self, key: &str, value: &[u8]) -> std::io::Result<()>;
    /// Where it lives, for messages and `wakeway check`.
    fn describe(&self) -> String;
}

/// Files under a directory: directories 0700, files 0600, written by rename.
pub struct Dir {
    root: PathBuf,
}

impl Dir {
    pub fn new(root: PathBuf) -> Dir {
        Dir { root }
    }

    fn path(&self, key: &str) -> std::io::Result<PathBuf> {
        let safe = !key.is_empty()
            && Path::new(key)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a storage key: {key:?}"),
            ));
        }
        Ok(self.root.join(key))
    }
}

impl Storage for Dir {
    fn load(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(key)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn store(&self, key: &str, value: &[u8]) -> std::io::Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(value)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Kept in memory only: a config built in code (no state file) orders again at each start.
#[derive(Default)]
pub struct Memory {
    values: Mutex<HashMap<String, Vec<u8>>>,
}

impl Storage for Memory {
    fn load(&self, key: &str) -> std::io::Result<Option<Vec<u8>>> {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        Ok(values.get(key).cloned())
    }

    fn store(&self, key: &str, value: &[u8]) -> std::io::Result<()> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn describe(&self) -> String {
        "memory (no state file: nothing persists)".into()
    }
}

/// The directory of one CA under the storage root: an account and its certificates belong to
/// the CA that issued them (staging and production never mix).
pub fn ca_dir(root: &Path, directory: &str) -> PathBuf {
    let slug: String = directory
        .trim_start_matches("https://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join(slug.trim_matches('_'))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn files_are_private_and_keys_cannot_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::new(ca_dir(tmp.path(), "https://ca.test:14000/dir"));
        dir.store("certs/a.test.pem", b"chain").unwrap();
        assert_eq!(dir.load("certs/a.test.pem").unwrap().unwrap(), b"chain");
        assert_eq!(dir.load("certs/b.test.pem").unwrap(), None);
        let file = tmp.path().join("ca.test_14000_dir/certs/a.test.pem");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        let mode = std::fs::metadata(file.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        for bad in ["../x", "/etc/passwd", "", "certs/../../x"] {
            assert!(dir.store(bad, b"x").is_err(), "{bad}");
        }
    }
}
