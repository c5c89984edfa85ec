//! The table of broken workflow specs under `tests/specs/invalid/`: each file's first line is
//! `# expect: LINE:COLUMN FRAGMENT | FRAGMENT …`, and checking the file must fail with an
//! `Error::Spec` at exactly that line and column whose message contains every fragment.

use std::path::Path;

use eddy_workflow::spec::Workflow;
use eddy_workflow::Error;

struct Expect {
    line: usize,
    column: usize,
    fragments: Vec<String>,
}

fn expectation(path: &Path, text: &str) -> Expect {
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("# expect: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be `# expect: L:C fragment`",
            path.display()
        )
    });
    let (at, fragments) = rest.split_once(' ').expect("`L:C fragment`");
    let (line, column) = at.split_once(':').expect("L:C");
    Expect {
        line: line.parse().expect("line"),
        column: column.parse().expect("column"),
        fragments: fragments
            .split(" | ")
            .map(|f| f.trim().to_string())
            .collect(),
    }
}

#[test]
fn every_invalid_spec_is_refused_at_its_line_and_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/specs/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "only {} invalid specs", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let expect = expectation(path, &text);
        let result = std::panic::catch_unwind(|| Workflow::load(path));
        let err = match result {
            Err(_) => {
                failures.push(format!("{}: panicked", path.display()));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{}: accepted", path.display()));
                continue;
            }
            Ok(Err(e)) => e,
        };
        let rendered = err.to_string();
        match &err {
            Error::Spec {
                line, column, file, ..
            } => {
                if (*line, *column) != (expect.line, expect.column) {
                    failures.push(format!(
                        "{}: at {line}:{column}, expected {}:{}: {rendered}",
                        path.display(),
                        expect.line,
                        expect.column
                    ));
                }
                if file != path {
                    failures.push(format!(
                        "{}: error names file {}",
                        path.display(),
                        file.display()
                    ));
                }
                let prefix = format!("{}:{}:{}: ", path.display(), line, column);
                if !rendered.starts_with(&prefix) {
                    failures.push(format!(
                        "{}: message does not start with {prefix:?}: {rendered}",
                        path.display()
                    ));
                }
            }
            other => failures.push(format!("{}: not a spec error: {other:?}", path.display())),
        }
        for f in &expect.fragments {
            if !rendered.contains(f.as_str()) {
                failures.push(format!(
                    "{}: message lacks {f:?}: {rendered}",
                    path.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_valid_spec_and_example_is_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("tests/specs/valid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for example in ["ctr", "clustering", "ps", "delayed-labels"] {
        let p = root.join("../examples").join(example).join("workflow.toml");
        assert!(p.exists(), "example {} is missing", p.display());
        files.push(p);
    }
    assert!(files.len() > 3, "no valid spec files found");
    for path in files {
        if let Err(e) = Workflow::load(&path) {
            panic!("{}: {e}", path.display());
        }
    }
}
