//! The one verdict policy: whether a call site's outstanding descriptors are a `leak`, merely
//! `unclosed`, a live `suspect`, or `inherited` across an exec. Report building gathers each
//! site's [`Facts`]; live views add what their history shows; every verdict comes from
//! [`decide`].
use super::{Report, Verdict};

/// How the process came to hold a group's descriptors. Copies inherited at fork are the
/// parent's descriptors (a leak there is reported in the parent); those that survived an exec
/// leaked into a program that never asked for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    #[default]
    Here,
    Fork,
    Exec,
}

/// What a site's verdict depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub origin: Origin,
    /// Acquisitions (calls) still open.
    pub calls: u64,
    pub oldest_age_ms: u64,
    /// The process has exited (its descriptors were open at exit).
    pub exited: bool,
    /// A live view saw this site keep growing, or keep old descriptors while acquiring more.
    pub suspect: bool,
}

/// The thresholds (`--min-count`, `--min-age`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub min_count: u64,
    /// Descriptors younger than this are not a leak (`unclosed`).
    pub min_age_ms: Option<u64>,
}

impl Policy {
    /// The policy of `--min-count N` and `--min-age SECS`.
    pub fn new(min_count: u64, min_age_s: Option<f64>) -> Self {
        Self {
            min_count,
            min_age_ms: min_age_s.map(|s| (s * 1000.0) as u64),
        }
    }
}

/// The verdict of a site. `live`: the run is a live view, whose running processes have no
/// descriptors open "at exit" yet.
pub fn decide(f: &Facts, policy: &Policy, live: bool) -> Verdict {
    if f.origin == Origin::Exec {
        return Verdict::Inherited;
    }
    let leak = f.origin == Origin::Here
        && f.calls >= policy.min_count
        && (!live || f.exited)
        && policy.min_age_ms.is_none_or(|min| f.oldest_age_ms >= min);
    if leak {
        Verdict::Leak
    } else if f.suspect {
        Verdict::Suspect
    } else {
        Verdict::Unclosed
    }
}

/// Decides every site of a report again (after a live view marked its suspects).
pub fn assign(report: &mut Report, policy: &Policy) {
    let live = report.live;
    for g in report.processes.iter_mut().flat_map(|p| &mut p.leaks) {
        g.verdict = decide(&g.facts, policy, live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(origin: Origin, calls: u64, age: u64, exited: bool) -> Facts {
        Facts {
            origin,
            calls,
            oldest_age_ms: age,
            exited,
            suspect: false,
        }
    }

    #[test]
    fn one_policy_for_every_verdict() {
        let p = Policy::new(2, None);
        assert_eq!(
            decide(&facts(Origin::Here, 2, 0, true), &p, false),
            Verdict::Leak
        );
        assert_eq!(
            decide(&facts(Origin::Here, 1, 0, true), &p, false),
            Verdict::Unclosed
        );
        assert_eq!(
            decide(&facts(Origin::Fork, 9, 0, true), &p, false),
            Verdict::Unclosed
        );
        assert_eq!(
            decide(&facts(Origin::Exec, 1, 0, true), &p, false),
            Verdict::Inherited
        );
        // Live: a running process has no leak yet; a suspect says so.
        assert_eq!(
            decide(&facts(Origin::Here, 9, 0, false), &p, true),
            Verdict::Unclosed
        );
        let mut s = facts(Origin::Here, 9, 0, false);
        s.suspect = true;
        assert_eq!(decide(&s, &p, true), Verdict::Suspect);
        assert_eq!(
            decide(&facts(Origin::Here, 9, 0, true), &p, true),
            Verdict::Leak
        );
        // --min-age spares young descriptors.
        let aged = Policy::new(2, Some(1.0));
        assert_eq!(
            decide(&facts(Origin::Here, 5, 999, true), &aged, false),
            Verdict::Unclosed
        );
        assert_eq!(
            decide(&facts(Origin::Here, 5, 1000, true), &aged, false),
            Verdict::Leak
        );
    }
}
