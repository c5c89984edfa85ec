//! Keeps `docs/workflow.md` honest: every TOML block in it is checked with
//! [`Workflow::load`], the call `eddy validate` makes, and every node kind, source kind,
//! learner and node or source key the checker accepts must have a table row whose first cell
//! is that name in backticks.
//! The checker's own error hints list those names, so a new kind or key fails this test until
//! the page has it. (Feature and `[workflow]` keys appear in no hint and are not covered.)
//!
//! The page's fenced blocks follow one convention:
//!
//! | fence | meaning | checked |
//! |---|---|---|
//! | ```` ```toml ```` | a complete spec | must validate |
//! | ```` ```toml,error ```` | a complete spec that shows a mistake | must be refused with a spec error (line, column) |
//! | ```` ```text ```` right after a `toml,error` block (only blank lines between) | what `eddy validate workflow.toml` prints for it | must equal `error: ` + the error, the file named `workflow.toml` |
//! | anything else (` ```bash `, ` ```text ` elsewhere, ` ``` `) | prose | not checked |
//!
//! Any other info string starting with `toml` (`toml,ignore`, ...) fails the test: a TOML block
//! the test does not check is a block that can drift. Snippets too small to be a spec go in
//! the tables as inline code instead.

use std::path::Path;

use eddy_workflow::spec::Workflow;
use eddy_workflow::Error;

/// A fenced block of the page.
struct Block {
    /// The info string after the opening fence (`toml`, `toml,error`, `text`, ...).
    info: String,
    /// 1-based line of the opening fence.
    line: usize,
    /// The contents, with a final newline.
    text: String,
    /// Whether only blank lines separate it from the previous block.
    follows_previous: bool,
}

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/workflow.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The page's fenced blocks (backtick fences only, as the page writes them).
fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut adjacent = false;
    for (i, line) in doc.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (open.as_mut(), fence) {
            (Some(_), Some(_)) => {
                out.extend(open.take());
                adjacent = true;
            }
            (Some(b), None) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    line: i + 1,
                    text: String::new(),
                    follows_previous: adjacent,
                });
            }
            (None, None) => adjacent &= line.trim().is_empty(),
        }
    }
    assert!(open.is_none(), "docs/workflow.md: an unclosed fenced block");
    out
}

/// Why `eddy validate` refused a spec.
struct Refusal {
    /// Whether it is an [`Error::Spec`] (with a line and column).
    spec: bool,
    /// The error as the command prints it, for a file named `workflow.toml`.
    shown: String,
}

/// Checks `text` as the file `workflow.toml`, as `eddy validate workflow.toml` would: `None`
/// if it is valid.
fn refusal(text: &str) -> Option<Refusal> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("workflow.toml");
    std::fs::write(&path, text).unwrap();
    Workflow::load(&path).err().map(|e| Refusal {
        spec: matches!(e, Error::Spec { .. }),
        shown: format!("error: {e}").replace(&format!("{}/", dir.path().display()), ""),
    })
}

#[test]
fn every_toml_block_of_the_page_validates_or_fails_as_marked() {
    let doc = doc();
    let blocks = blocks(&doc);
    let mut failures = Vec::new();
    let (mut valid, mut errors, mut outputs) = (0, 0, 0);
    for (i, b) in blocks.iter().enumerate() {
        let at = format!("docs/workflow.md:{}", b.line);
        match b.info.as_str() {
            "toml" => {
                valid += 1;
                if let Some(r) = refusal(&b.text) {
                    failures.push(format!("{at}: refused: {}", r.shown));
                }
            }
            "toml,error" => {
                errors += 1;
                let shown = match refusal(&b.text) {
                    None => {
                        failures.push(format!("{at}: marked `toml,error` but validates"));
                        continue;
                    }
                    Some(Refusal { spec: false, shown }) => {
                        failures.push(format!("{at}: not a spec error: {shown}"));
                        continue;
                    }
                    Some(Refusal { shown, .. }) => shown,
                };
                if let Some(next) = blocks.get(i + 1) {
                    if next.info == "text" && next.follows_previous {
                        outputs += 1;
                        let expected = next.text.trim();
                        if shown != expected {
                            failures.push(format!(
                                "docs/workflow.md:{}: the page shows\n  {expected}\nbut `eddy validate` prints\n  {shown}",
                                next.line
                            ));
                        }
                    }
                }
            }
            info if info.starts_with("toml") => failures.push(format!(
                "{at}: unknown fence `{info}`: use `toml` or `toml,error` (see tests/spec_doc.rs)"
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(valid >= 5, "only {valid} `toml` blocks in docs/workflow.md");
    assert!(errors >= 1 && outputs >= 1, "no checked error example");
}

/// The hint of the spec error `text` gets.
fn hint(text: &str) -> String {
    match Workflow::parse(text) {
        Err(Error::Spec { hint: Some(h), .. }) => h,
        other => panic!("expected a spec error with a hint for\n{text}\ngot {other:?}"),
    }
}

/// The comma-separated names after `prefix` in `hint`.
fn names_after(hint: &str, prefix: &str) -> Vec<String> {
    let rest = hint
        .split_once(prefix)
        .unwrap_or_else(|| panic!("hint {hint:?} has no {prefix:?}"))
        .1;
    rest.split(", ").map(|s| s.trim().to_string()).collect()
}

#[test]
fn every_kind_learner_and_key_the_checker_accepts_has_a_row() {
    let doc = doc();
    let mut missing = Vec::new();
    let mut row = |what: &str, name: &str| {
        if !doc.contains(&format!("| `{name}` |")) {
            missing.push(format!("{what} `{name}`"));
        }
    };
    // the checker lists the kinds and learners when it refuses an unknown one
    let node_kinds = names_after(&hint("[nodes.n]\nkind = \"zzzz\"\n"), "kinds: ");
    let source_kinds = names_after(&hint("[sources.s]\nkind = \"zzzz\"\n"), "kinds: ");
    let learners = names_after(
        &hint(
            "[nodes.n]\nkind = \"batch-train\"\nsource = \"s\"\nfeatures = \"f\"\nlearner = \"zzzz\"\n",
        ),
        "learners: ",
    );
    for k in &node_kinds {
        row("node kind", k);
        // ... and a kind's keys when it refuses a key of another kind
        let foreign = if k == "command" { "model" } else { "program" };
        let text = format!("[nodes.n]\nkind = \"{k}\"\n{foreign} = \"x\"\n");
        for key in names_after(&hint(&text), "node: ") {
            row(&format!("key of a `{k}` node"), &key);
        }
    }
    for k in &source_kinds {
        row("source kind", k);
        let foreign = if k == "hybrid" { "path" } else { "live" };
        let text = format!("[sources.s]\nkind = \"{k}\"\n{foreign} = \"x\"\n");
        for key in names_after(&hint(&text), "source: ") {
            row(&format!("key of a `{k}` source"), &key);
        }
    }
    for l in &learners {
        row("learner", l);
    }
    assert!(node_kinds.len() >= 6 && source_kinds.len() >= 3 && learners.len() >= 5);
    assert!(
        missing.is_empty(),
        "docs/workflow.md has no table row (`| `name` |`) for:\n{}",
        missing.join("\n")
    );
}
