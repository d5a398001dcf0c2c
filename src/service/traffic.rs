//! How a service's requests are shared among its revisions: the lanes with a percentage (a
//! request picks one by weighted choice), and the tagged lanes a `tag--host` reaches directly.
//! Immutable: the controller builds a new one and stores it, so a change of the split (or the
//! blue/green switch) is one store.

use std::cell::Cell;
use std::sync::Arc;

use super::lane::Lane;

thread_local! {
    /// xorshift state for the weighted choice. Per thread: a shared one would be a cache line
    /// every worker writes per request.
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let here = &t as *const u64 as u64;
    (t ^ here.rotate_left(32)) | 1
}

/// A number in `0..100`, uniformly.
fn roll() -> u32 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        // The high bits are the better ones; the modulo bias over 2^32 is below 1e-7.
        ((x >> 32) % 100) as u32
    })
}

/// One revision in the traffic.
pub struct Share {
    pub lane: Arc<Lane>,
    pub percent: u32,
    pub tags: Vec<String>,
    /// The traffic entry named no revision but the latest.
    pub latest: bool,
}

#[derive(Default)]
pub struct Traffic {
    pub shares: Vec<Share>,
    /// `(upper bound of the roll, index into shares)` for the shares with a percentage.
    weighted: Vec<(u32, usize)>,
}

impl Traffic {
    pub fn new(shares: Vec<Share>) -> Traffic {
        let mut weighted = Vec::new();
        let mut bound = 0;
        for (k, s) in shares.iter().enumerate() {
            if s.percent > 0 {
                bound += s.percent;
                weighted.push((bound, k));
            }
        }
        Traffic { shares, weighted }
    }

    /// All of it to one lane.
    pub fn single(lane: Arc<Lane>) -> Traffic {
        Traffic::new(vec![Share {
            lane,
            percent: 100,
            tags: Vec::new(),
            latest: true,
        }])
    }

    /// The lane a request without a tag goes to.
    pub fn pick(&self) -> Option<&Arc<Lane>> {
        let k = match self.weighted.as_slice() {
            [] => return None,
            [(_, k)] => *k,
            many => {
                let total = many.last().map_or(100, |w| w.0);
                let r = roll() % total.max(1);
                many.iter().find(|(bound, _)| r < *bound).map_or(0, |w| w.1)
            }
        };
        Some(&self.shares[k].lane)
    }

    /// The lane of the revision tagged `tag`.
    pub fn tagged(&self, tag: &str) -> Option<&Arc<Lane>> {
        self.shares
            .iter()
            .find(|s| s.tags.iter().any(|t| t == tag))
            .map(|s| &s.lane)
    }

    pub fn lanes(&self) -> impl Iterator<Item = &Arc<Lane>> {
        self.shares.iter().map(|s| &s.lane)
    }

    pub fn lane_of(&self, revision: &str) -> Option<&Arc<Lane>> {
        self.lanes().find(|l| l.revision == revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(rev: &str, percent: u32, tags: &[&str]) -> Share {
        Share {
            lane: Lane::new(rev),
            percent,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            latest: false,
        }
    }

    #[test]
    fn weighted_choice_follows_the_percentages() {
        let t = Traffic::new(vec![share("a", 90, &[]), share("b", 10, &["canary"])]);
        let n = 100_000;
        let b = (0..n).filter(|_| t.pick().unwrap().revision == "b").count();
        let share = b as f64 / n as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
    }

    #[test]
    fn a_zero_share_takes_only_its_tag() {
        let t = Traffic::new(vec![share("a", 100, &[]), share("b", 0, &["next"])]);
        assert!((0..1000).all(|_| t.pick().unwrap().revision == "a"));
        assert_eq!(t.tagged("next").unwrap().revision, "b");
        assert!(t.tagged("other").is_none());
    }
}
