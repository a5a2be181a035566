//! SARIF 2.1.0 for code-scanning tools (GitHub code scanning, IDE viewers): one result per call
//! site with descriptors still open, at the innermost frame of the program's own code, with the
//! whole stack, and one rule (`fd-leak/<kind>`) per descriptor kind.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use serde_sarif::sarif::{
    Address, ArtifactLocation, Location, LogicalLocation, Message, MultiformatMessageString,
    PhysicalLocation, PropertyBag, Region, ReportingDescriptor, ResultLevel, Run, Sarif, Stack,
    StackFrame, Suppression, SupressionKind, Tool, ToolComponent, Version,
};

use super::{Frame, Group, ProcessReport, Report, Verdict, relative_to_cwd, table::frame_short};
use crate::enrich::Kind;

/// The `$schema` of the log.
const SCHEMA_URI: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Base of relative artifact URIs: the current directory (the checkout in CI).
const SRCROOT: &str = "%SRCROOT%";

/// Bytes percent-encoded in URI paths: all but unreserved characters and `/`.
const PATH_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Renders the report as a SARIF log with one run.
pub fn render(report: &Report) -> Result<String> {
    let kinds: Vec<Kind> = report
        .processes
        .iter()
        .flat_map(|p| &p.leaks)
        .map(|g| g.kind)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let results: Vec<_> = report
        .processes
        .iter()
        .flat_map(|p| p.leaks.iter().map(move |g| (p, g)))
        .map(|(p, g)| result(p, g, &kinds))
        .collect();
    let driver = ToolComponent::builder()
        .name(report.tool)
        .version(report.version)
        .rules(kinds.iter().copied().map(rule).collect::<Vec<_>>())
        .build();
    let mut run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .results(results)
        .properties(bag([
            ("command", json!(report.command)),
            ("exitCode", json!(report.exit_code)),
            ("eventsLost", json!(report.events.lost)),
            ("incomplete", json!(report.incomplete)),
        ]))
        .build();
    run.original_uri_base_ids = std::env::current_dir().ok().map(|cwd| {
        let mut dir = encode(&cwd.display().to_string());
        if !dir.ends_with('/') {
            dir.push('/');
        }
        let root = ArtifactLocation::builder()
            .uri(format!("file://{dir}"))
            .build();
        BTreeMap::from([(SRCROOT.to_string(), root)])
    });
    let log = Sarif::builder()
        .schema(SCHEMA_URI)
        .version(Version::V2_1_0.to_string())
        .runs(vec![run])
        .build();
    let mut out = serde_json::to_string_pretty(&log).context("encoding the SARIF log")?;
    out.push('\n');
    Ok(out)
}

/// The rule id of a descriptor kind.
fn rule_id(kind: Kind) -> String {
    format!("fd-leak/{kind}")
}

/// The rule of one descriptor kind.
fn rule(kind: Kind) -> ReportingDescriptor {
    ReportingDescriptor::builder()
        .id(rule_id(kind))
        .short_description(text(format!("{kind} descriptor never released")))
        .full_description(text(format!(
            "A {kind} descriptor acquired at this call site was still open when its process \
             exited or when tracing ended."
        )))
        .help(text(
            "Release the descriptor on every path (close it, or drop what owns it). Descriptors \
             that reach exec'd programs need O_CLOEXEC.",
        ))
        .build()
}

/// The result of one call site.
fn result(p: &ProcessReport, g: &Group, kinds: &[Kind]) -> serde_sarif::sarif::Result {
    let (level, suppression) = match (&g.suppressed, g.in_baseline) {
        (Some(s), _) => (ResultLevel::Note, Some(s.as_str())),
        (None, true) => (ResultLevel::Note, Some("in baseline")),
        (None, false) => (
            match g.verdict {
                Verdict::Leak | Verdict::Inherited => ResultLevel::Error,
                Verdict::Suspect => ResultLevel::Warning,
                Verdict::Unclosed => ResultLevel::Note,
            },
            None,
        ),
    };
    let mut r = serde_sarif::sarif::Result::builder()
        .rule_id(rule_id(g.kind))
        .rule_index(kinds.iter().position(|k| *k == g.kind).unwrap_or(0) as i64)
        .level(level)
        .message(Message::builder().text(g.headline(p)).build())
        .locations(result_location(p, g).into_iter().collect::<Vec<_>>())
        .stacks(
            std::iter::once(&g.stack)
                .chain(&g.created_by)
                .map(|s| {
                    Stack::builder()
                        .frames(s.iter().map(stack_frame).collect::<Vec<_>>())
                        .build()
                })
                .collect::<Vec<_>>(),
        )
        .properties(bag([
            ("pid", json!(p.pid)),
            ("comm", json!(p.comm)),
            ("exe", json!(p.exe)),
            ("verdict", json!(g.verdict)),
            ("syscall", json!(g.syscall)),
            ("count", json!(g.count)),
            ("calls", json!(g.calls)),
            ("fds", json!(g.fds)),
            ("resources", json!(g.resources)),
        ]))
        .build();
    r.suppressions = suppression.map(|justification| {
        vec![
            Suppression::builder()
                .kind(SupressionKind::External.to_string())
                .justification(justification)
                .build(),
        ]
    });
    r
}

/// The innermost frame of the program's own code that has a source file. Without one the result
/// is located at the executable: GitHub code scanning rejects a log with an unlocated result.
fn result_location(p: &ProcessReport, g: &Group) -> Option<Location> {
    if let Some(f) = g.source_frame() {
        return Some(Location {
            physical_location: physical(f),
            ..Default::default()
        });
    }
    (!p.exe.is_empty()).then(|| Location {
        physical_location: Some(PhysicalLocation {
            artifact_location: Some(artifact(&p.exe)),
            ..Default::default()
        }),
        message: Some(
            Message::builder()
                .text("no frame of the program's own code has a source file")
                .build(),
        ),
        ..Default::default()
    })
}

/// One frame of the stack: source location and address, function and module.
fn stack_frame(f: &Frame) -> StackFrame {
    let location = Location {
        physical_location: physical(f),
        logical_locations: f.function.as_ref().map(|name| {
            vec![
                LogicalLocation::builder()
                    .fully_qualified_name(name)
                    .kind("function")
                    .build(),
            ]
        }),
        message: Some(Message::builder().text(frame_short(f)).build()),
        ..Default::default()
    };
    StackFrame::builder()
        .location(location)
        .module(f.module.clone())
        .properties(bag([
            ("offset", json!(f.offset)),
            ("inlined", json!(f.inlined)),
            ("ownCode", json!(f.own_code)),
        ]))
        .build()
}

/// A frame's file and line and its address in the process (none when neither is known).
fn physical(f: &Frame) -> Option<PhysicalLocation> {
    let address = u64::from_str_radix(f.address.trim_start_matches("0x"), 16)
        .ok()
        .and_then(|a| i64::try_from(a).ok())
        .map(|a| Address::builder().absolute_address(a).build());
    // A relative path outside the program's own code is relative to wherever that library was
    // built, not to the checkout: such a frame keeps its file in its message only.
    let artifact_location = f
        .file
        .as_deref()
        .filter(|file| f.own_code || file.starts_with('/'))
        .map(artifact);
    let region = f
        .line
        .filter(|l| *l > 0 && artifact_location.is_some())
        .map(|l| Region::builder().start_line(i64::from(l)).build());
    (address.is_some() || artifact_location.is_some()).then_some(PhysicalLocation {
        address,
        artifact_location,
        region,
        ..Default::default()
    })
}

/// A file as an artifact: relative to %SRCROOT% (the current directory) when under it or
/// relative already, else an absolute `file://` URI.
fn artifact(file: &str) -> ArtifactLocation {
    match relative_to_cwd(file) {
        Some(rel) => ArtifactLocation::builder()
            .uri(encode(&rel))
            .uri_base_id(SRCROOT)
            .build(),
        None if file.starts_with('/') => ArtifactLocation::builder()
            .uri(format!("file://{}", encode(file)))
            .build(),
        None => ArtifactLocation::builder()
            .uri(encode(file))
            .uri_base_id(SRCROOT)
            .build(),
    }
}

/// A path percent-encoded for a URI.
fn encode(path: &str) -> String {
    utf8_percent_encode(path, PATH_ESCAPED).to_string()
}

/// A plain-text message string.
fn text(s: impl Into<String>) -> MultiformatMessageString {
    MultiformatMessageString::builder().text(s.into()).build()
}

/// A property bag.
fn bag<const N: usize>(pairs: [(&str, Value); N]) -> PropertyBag {
    PropertyBag::builder()
        .additional_properties(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
        )
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample_report;

    /// The official SARIF 2.1.0 schema (OASIS, `sarif-schema-2.1.0.json`), vendored.
    fn official_schema() -> Value {
        serde_json::from_str(include_str!("../../schema/sarif-2.1.0.schema.json"))
            .expect("schema JSON")
    }

    #[test]
    fn sample_is_valid_sarif() {
        let log: Value =
            serde_json::from_str(&render(&sample_report()).expect("render")).expect("JSON");
        let validator = jsonschema::draft7::options()
            .should_validate_formats(true)
            .build(&official_schema())
            .expect("SARIF schema");
        let errors: Vec<String> = validator
            .iter_errors(&log)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "invalid SARIF: {errors:#?}");
        // The schema is enforced: a level SARIF does not know is rejected.
        let mut bad = log.clone();
        bad["runs"][0]["results"][0]["level"] = json!("fatal");
        assert!(!validator.is_valid(&bad));
        assert_eq!(log["version"], "2.1.0");
        assert_eq!(log["$schema"], SCHEMA_URI);
        let run = &log["runs"][0];
        assert_eq!(run["tool"]["driver"]["name"], "tracer");
        let rules: Vec<&str> = run["tool"]["driver"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| r["id"].as_str().expect("rule id"))
            .collect();
        assert_eq!(
            rules,
            [
                "fd-leak/file",
                "fd-leak/socket",
                "fd-leak/pipe",
                "fd-leak/eventfd"
            ]
        );
        let results = run["results"].as_array().expect("results");
        let summary: Vec<(&str, &str)> = results
            .iter()
            .map(|r| {
                (
                    r["ruleId"].as_str().expect("ruleId"),
                    r["level"].as_str().expect("level"),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("fd-leak/socket", "error"),
                ("fd-leak/pipe", "note"),
                ("fd-leak/file", "note"),
                ("fd-leak/file", "error"),
                ("fd-leak/socket", "warning"),
                ("fd-leak/eventfd", "note"),
            ]
        );
        let leak = &results[0];
        assert_eq!(
            rules[leak["ruleIndex"].as_u64().expect("index") as usize],
            "fd-leak/socket"
        );
        assert_eq!(
            leak["message"]["text"],
            "37 socket descriptors leaked (accept4, still open at exit) at serve::accept_conn \
             (src/serve.rs:40) in pid 1234 (svc)"
        );
        let at = &leak["locations"][0]["physicalLocation"];
        assert_eq!(at["artifactLocation"]["uri"], "src/serve.rs");
        assert_eq!(at["artifactLocation"]["uriBaseId"], SRCROOT);
        assert_eq!(at["region"]["startLine"], 40);
        let frames = leak["stacks"][0]["frames"].as_array().expect("frames");
        assert_eq!(frames.len(), 6);
        assert_eq!(
            frames[2]["location"]["logicalLocations"][0]["fullyQualifiedName"],
            "serve::accept_conn"
        );
        assert_eq!(frames[5]["module"], "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(leak["properties"]["pid"], 1234);
        assert_eq!(leak["properties"]["count"], 37);
        // Outside the current directory: an absolute file URI.
        assert_eq!(
            results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "file:///elsewhere/config.rs"
        );
        // Suppressed, and in the baseline.
        assert_eq!(results[2]["suppressions"][0]["kind"], "external");
        assert_eq!(
            results[2]["suppressions"][0]["justification"],
            "tracer.supp:3"
        );
        assert_eq!(
            results[5]["suppressions"][0]["justification"],
            "in baseline"
        );
        assert!(results[0].get("suppressions").is_none());
        // No frame of its own code: located at the executable, without a region.
        let exe = &results[3]["locations"][0]["physicalLocation"];
        assert_eq!(exe["artifactLocation"]["uri"], "file:///srv/worker");
        assert!(exe.get("region").is_none());
        // The inlined frame of the program is the site.
        assert_eq!(
            results[4]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "src/net.rs"
        );
    }
}
