//! The ACME account: created at the CA once, its credentials (key included) kept in storage
//! and reused at every start, so a restart neither registers again nor loses the account.

use instant_acme::{Account, AccountCredentials, NewAccount};

use super::AcmeConfig;
use super::client::{Client, read_roots};
use super::order::Failure;
use super::storage::Storage;

const KEY: &str = "account.json";

/// The stored account, or a new one registered now.
pub async fn open(config: &AcmeConfig, storage: &dyn Storage) -> Result<Account, Failure> {
    let mut roots = Vec::new();
    for path in &config.ca_roots {
        roots.extend(read_roots(path).map_err(|e| fail(format!("{}: {e}", path.display())))?);
    }
    let builder = || Account::builder_with_http(Box::new(Client::new(roots.clone())));
    let stored = storage
        .load(KEY)
        .map_err(|e| fail(format!("reading {KEY} in {}: {e}", storage.describe())))?;
    if let Some(bytes) = stored {
        match serde_json::from_slice::<AccountCredentials>(&bytes) {
            Ok(credentials) => return Ok(builder().from_credentials(credentials).await?),
            Err(e) => {
                // Not silently replaced: a new account would lose nothing but is a surprise.
                return Err(fail(format!(
                    "{KEY} in {} is not valid account credentials ({e}); move it away to register a new account",
                    storage.describe()
                )));
            }
        }
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await?;
    let bytes = serde_json::to_vec(&credentials).map_err(|e| fail(e.to_string()))?;
    storage
        .store(KEY, &bytes)
        .map_err(|e| fail(format!("saving {KEY} in {}: {e}", storage.describe())))?;
    Ok(account)
}

fn fail(detail: String) -> Failure {
    Failure {
        problem: None,
        detail,
    }
}
