//! The CI gate: what fails a run. `--suppressions` marks known sites, `--baseline` marks sites
//! an earlier report already had; only the rest fail `--fail-on-leak` (verdicts themselves,
//! `--min-age` included, come from [`super::verdict`]). The exit code is decided here.
//!
//! Suppressions file: one suppression per line, `field=glob` pairs separated by spaces, all of
//! which must match; `#` starts a comment. Fields: `kind` (file, socket, ...), `function`,
//! `module` and `file` (matched against one frame of the stack: all three against the same
//! frame), `resource` (any of the site's resources). Globs: `*`, `?`, `[...]`, `{a,b}`.
//!
//! ```text
//! # the connection pool keeps its sockets on purpose
//! kind=socket function=*ConnectionPool::*
//! resource=/var/log/*.log   # log files held for the process's lifetime
//! ```
use std::{collections::HashSet, path::Path};

use anyhow::{Context as _, Result, bail};
use globset::{Glob, GlobMatcher};
use serde_json::Value;

use super::{Frame, Group, Report};
use crate::{exit, output::OutputArgs};

/// tracer's exit code after `report`: [`exit::LEAK`] with `--fail-on-leak` when a site fails,
/// else the command's own.
pub fn exit_code(report: &Report, out: &OutputArgs, command: i32) -> i32 {
    if out.fail_on_leak && report.has_leak() {
        exit::LEAK
    } else {
        command
    }
}

/// Marks the sites `out`'s suppressions and baseline know.
pub fn apply(report: &mut Report, out: &OutputArgs) -> Result<()> {
    if let Some(path) = &out.suppressions {
        let rules = parse_suppressions(path)?;
        let mut used = vec![false; rules.len()];
        for g in report.processes.iter_mut().flat_map(|p| &mut p.leaks) {
            if let Some(i) = rules.iter().position(|r| r.matches(g)) {
                used[i] = true;
                g.suppressed = Some(rules[i].origin.clone());
            }
        }
        report.unused_suppressions = rules
            .iter()
            .zip(used)
            .filter(|(_, used)| !used)
            .map(|(r, _)| format!("{}: {}", r.origin, r.text))
            .collect();
    }
    if let Some(path) = &out.baseline {
        let known = baseline_sites(path)?;
        for g in report.processes.iter_mut().flat_map(|p| &mut p.leaks) {
            g.in_baseline = known.contains(&identity(&g.kind.to_string(), &g.syscall, &g.stack));
        }
    }
    Ok(())
}

/// One suppression.
struct Rule {
    /// `FILE:LINE`.
    origin: String,
    text: String,
    kind: Option<GlobMatcher>,
    function: Option<GlobMatcher>,
    module: Option<GlobMatcher>,
    file: Option<GlobMatcher>,
    resource: Option<GlobMatcher>,
}

impl Rule {
    fn matches(&self, g: &Group) -> bool {
        let is = |m: &Option<GlobMatcher>, s: &str| m.as_ref().is_none_or(|m| m.is_match(s));
        let frame_fields = self.function.is_some() || self.module.is_some() || self.file.is_some();
        let frame_ok = |f: &Frame| {
            is(&self.function, f.function.as_deref().unwrap_or(""))
                && is(&self.module, &f.module)
                && is(&self.file, f.file.as_deref().unwrap_or(""))
        };
        is(&self.kind, g.kind.as_str())
            && (!frame_fields || g.stack.iter().any(frame_ok))
            && (self.resource.is_none() || g.resources.iter().any(|r| is(&self.resource, r)))
    }
}

fn parse_suppressions(path: &Path) -> Result<Vec<Rule>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the suppressions {}", path.display()))?;
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let origin = format!("{}:{}", path.display(), i + 1);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut rule = Rule {
            origin: origin.clone(),
            text: line.to_string(),
            kind: None,
            function: None,
            module: None,
            file: None,
            resource: None,
        };
        for pair in line.split_whitespace() {
            let Some((field, pattern)) = pair.split_once('=') else {
                bail!("{origin}: expected field=glob, got {pair:?}");
            };
            let glob = Glob::new(pattern)
                .with_context(|| format!("{origin}: bad glob {pattern:?}"))?
                .compile_matcher();
            let slot = match field {
                "kind" => &mut rule.kind,
                "function" => &mut rule.function,
                "module" => &mut rule.module,
                "file" => &mut rule.file,
                "resource" => &mut rule.resource,
                other => bail!(
                    "{origin}: unknown field {other:?} (kind, function, module, file, resource)"
                ),
            };
            if slot.replace(glob).is_some() {
                bail!("{origin}: field {field:?} given twice (all fields must match)");
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// A call site's identity across builds: kind, syscall, and the program's own frames by
/// function and file name and line (no addresses, no directories).
fn identity(kind: &str, syscall: &str, stack: &[Frame]) -> String {
    let own: Vec<String> = stack
        .iter()
        .filter(|f| f.own_code)
        .map(|f| {
            let file = f.file.as_deref().map(|p| p.rsplit('/').next().unwrap_or(p));
            format!(
                "{}@{}:{}",
                f.function.as_deref().unwrap_or("?"),
                file.unwrap_or("?"),
                f.line.unwrap_or(0)
            )
        })
        .collect();
    let frames = if own.is_empty() {
        stack.iter().filter_map(|f| f.function.clone()).collect()
    } else {
        own
    };
    format!("{kind}|{syscall}|{}", frames.join("|"))
}

/// The call sites of an earlier JSON report.
fn baseline_sites(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the baseline {}", path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .with_context(|| format!("the baseline {} is not a JSON report", path.display()))?;
    let Some(processes) = json["processes"].as_array() else {
        bail!(
            "the baseline {} is not a tracer JSON report (no \"processes\")",
            path.display()
        );
    };
    let mut sites = HashSet::new();
    let mut groups = Vec::new();
    for p in processes {
        let Some(leaks) = p["leaks"].as_array() else {
            bail!(
                "the baseline {} is not a tracer JSON report (a process without \"leaks\")",
                path.display()
            );
        };
        groups.extend(leaks);
    }
    for g in groups {
        let stack: Vec<Frame> = serde_json::from_value(g["stack"].clone())
            .with_context(|| format!("the baseline {}: a stack is malformed", path.display()))?;
        sites.insert(identity(
            g["kind"].as_str().unwrap_or(""),
            g["syscall"].as_str().unwrap_or(""),
            &stack,
        ));
    }
    Ok(sites)
}
