//! The pure heart of scaling: given the live revision's instances and the desired count, what
//! to do. No runtime, no clock, no I/O: the controller applies the actions.

/// A live-revision instance as the reconciler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member<'a> {
    /// A start in progress (spawning or waiting for its startup probe), oldest first.
    Starting { id: &'a str },
    /// Routable, with its requests in flight.
    Ready { id: &'a str, in_flight: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start this many new instances.
    Start(u32),
    /// Cancel this start: the instance is stopped before it takes any traffic.
    CancelStart(String),
    /// Take this ready instance out of the pool, let it finish, then stop it.
    Drain(String),
}

/// Matches the live instances (starting and ready) to `desired`. Excess comes from starts
/// first (newest first: they are furthest from serving and hold no request), then from the
/// least busy ready instances, so a warm instance never makes way for a cold start. While a
/// failed start backs off (`backing_off`), nothing new starts.
pub fn reconcile(members: &[Member<'_>], desired: u32, backing_off: bool) -> Vec<Action> {
    let active = members.len() as u32;
    if active < desired {
        if backing_off {
            return Vec::new();
        }
        return vec![Action::Start(desired - active)];
    }
    let mut excess = (active - desired) as usize;
    let mut actions = Vec::new();
    for m in members.iter().rev() {
        if excess == 0 {
            return actions;
        }
        if let Member::Starting { id } = m {
            actions.push(Action::CancelStart(id.to_string()));
            excess -= 1;
        }
    }
    let mut ready: Vec<(&str, u32)> = members
        .iter()
        .filter_map(|m| match m {
            Member::Ready { id, in_flight } => Some((*id, *in_flight)),
            Member::Starting { .. } => None,
        })
        .collect();
    // Stable: among equally busy ones the older instance stays.
    ready.sort_by_key(|&(_, load)| load);
    actions.extend(
        ready
            .into_iter()
            .take(excess)
            .map(|(id, _)| Action::Drain(id.to_string())),
    );
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starting(id: &str) -> Member<'_> {
        Member::Starting { id }
    }

    fn ready(id: &str, in_flight: u32) -> Member<'_> {
        Member::Ready { id, in_flight }
    }

    #[test]
    fn starts_what_is_missing_unless_backing_off() {
        let m = [ready("a", 3), starting("b")];
        assert_eq!(reconcile(&m, 4, false), vec![Action::Start(2)]);
        assert_eq!(reconcile(&m, 4, true), vec![]);
        assert_eq!(reconcile(&m, 2, false), vec![]);
    }

    /// Issue 9, defect 2: desired 1, one ready and one starting. The start goes, the warm one
    /// stays (it used to be drained, and traffic waited for the cold start).
    #[test]
    fn excess_cancels_starts_before_draining_a_ready_instance() {
        let m = [ready("a", 0), starting("b")];
        assert_eq!(
            reconcile(&m, 1, false),
            vec![Action::CancelStart("b".into())]
        );
        let m = [ready("a", 5), starting("b"), starting("c"), ready("d", 1)];
        assert_eq!(
            reconcile(&m, 1, false),
            vec![
                Action::CancelStart("c".into()),
                Action::CancelStart("b".into()),
                Action::Drain("d".into()),
            ]
        );
    }

    #[test]
    fn drains_the_least_busy_ready_instances() {
        let m = [ready("a", 4), ready("b", 0), ready("c", 2)];
        assert_eq!(
            reconcile(&m, 1, false),
            vec![Action::Drain("b".into()), Action::Drain("c".into())]
        );
        assert_eq!(
            reconcile(&m, 0, true).len(),
            3,
            "a backoff never keeps excess"
        );
    }
}
