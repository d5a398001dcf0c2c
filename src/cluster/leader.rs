//! Leader election: the leader is the replica whose lease holds `{prefix}/leader`, created in a
//! transaction only while the key does not exist. It leads while its lease holds and the key is
//! still its own; every write it makes as leader is a transaction conditioned on that (fencing),
//! so a replica that lost the lease without knowing it yet cannot overwrite a newer leader.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::etcd::{self, Client, KeyValue, txn};

/// How often a follower looks whether the leader key is free, and the leader that it still
/// holds it.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Who leads, as this replica knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Role {
    /// This replica's lease while it leads.
    pub leading: Option<i64>,
    /// The leader's name, when one is known.
    pub leader: Option<String>,
}

/// What the leader key says to the holder of `lease`.
#[derive(Debug, PartialEq, Eq)]
pub enum Judgement {
    Lead,
    Follow(String),
    Vacant,
}

pub fn judge(key: Option<&KeyValue>, lease: i64) -> Judgement {
    match key {
        None => Judgement::Vacant,
        Some(kv) if kv.lease == lease => Judgement::Lead,
        Some(kv) => Judgement::Follow(String::from_utf8_lossy(&kv.value).into_owned()),
    }
}

/// Campaigns for `key` with this replica's lease, for as long as it runs.
pub async fn campaign(
    etcd: Arc<Client>,
    key: String,
    name: String,
    mut lease: watch::Receiver<Option<i64>>,
    role: watch::Sender<Role>,
    stop: CancellationToken,
) {
    loop {
        let held = *lease.borrow_and_update();
        let next = match held {
            None => Role::default(),
            Some(l) => match look(&etcd, &key, &name, l).await {
                Ok(Judgement::Lead) => Role {
                    leading: Some(l),
                    leader: Some(name.clone()),
                },
                Ok(Judgement::Follow(who)) => Role {
                    leading: None,
                    leader: Some(who),
                },
                Ok(Judgement::Vacant) => Role::default(),
                // Unknown: the role stands until the lease says otherwise.
                Err(e) => {
                    tracing::debug!("cluster: cannot read the leader key: {e}");
                    role.borrow().clone()
                }
            },
        };
        role.send_if_modified(|r| {
            if *r == next {
                return false;
            }
            if next.leading.is_some() && r.leading.is_none() {
                tracing::info!("cluster: {name} leads");
            } else if r.leading.is_some() && next.leading.is_none() {
                tracing::warn!("cluster: {name} stops leading");
            }
            *r = next;
            true
        });
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = lease.changed() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
    role.send_replace(Role::default());
}

/// Reads the leader key, and takes it when it is free.
async fn look(etcd: &Client, key: &str, name: &str, lease: i64) -> etcd::Result<Judgement> {
    let current = etcd.get(key).await?;
    match judge(current.as_ref(), lease) {
        Judgement::Vacant => {}
        j => return Ok(j),
    }
    let r = etcd
        .txn(etcd::proto::TxnRequest {
            compare: vec![txn::absent(key)],
            success: vec![txn::put(key, name.as_bytes().to_vec(), lease)],
            failure: vec![txn::get(key)],
        })
        .await?;
    if r.succeeded {
        return Ok(Judgement::Lead);
    }
    Ok(judge(txn::read(&r).first().copied(), lease))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str, lease: i64) -> KeyValue {
        KeyValue {
            key: b"/w/leader".to_vec(),
            create_revision: 3,
            mod_revision: 3,
            value: value.as_bytes().to_vec(),
            lease,
        }
    }

    #[test]
    fn only_the_holder_of_the_key_leads() {
        assert_eq!(judge(None, 7), Judgement::Vacant);
        assert_eq!(judge(Some(&kv("edge-1", 7)), 7), Judgement::Lead);
        assert_eq!(
            judge(Some(&kv("edge-1", 7)), 8),
            Judgement::Follow("edge-1".into())
        );
    }

    #[test]
    fn a_replica_whose_old_lease_expired_does_not_lead_under_a_new_one() {
        // Same name, new lease: the key (if it survived) belongs to the old one.
        assert_eq!(
            judge(Some(&kv("edge-1", 7)), 9),
            Judgement::Follow("edge-1".into())
        );
    }
}
