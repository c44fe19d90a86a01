//! The real `dasher` binary against a real server: rules export/plan/apply/import, exit codes,
//! and the sentences for a wrong token and an unreachable server.

use dasher_server::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn dasher(server: &str, token: &str, args: &[&str]) -> Run {
    let (server, token) = (server.to_owned(), token.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let out: Output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_dasher"))
            .args(&args)
            .env("DASHER_SERVER", server)
            .env("DASHER_ADMIN_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_commands_against_a_real_server() {
    let data = tempfile::tempdir().unwrap();
    let server = dasher_server::start(Config::for_tests(data.path())).await.unwrap();
    let url = format!("http://{}", server.addr());
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move { dasher(&url, "test-token", &args.iter().map(String::as_str).collect::<Vec<_>>()).await }
    };
    let work = tempfile::tempdir().unwrap();
    let (imported, exported) = (work.path().join("imported"), work.path().join("exported"));

    // Import Moroz and santactl files, then apply them.
    let r = run(vec![
        "rules".into(),
        "import".into(),
        "--from".into(),
        "moroz".into(),
        s(&fixtures().join("moroz")).into(),
        "--out".into(),
        s(&imported).into(),
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("global.toml (4 rules"), "{}", r.stdout);
    assert!(r.stderr.contains("warning: global.toml: sync settings"), "{}", r.stderr);
    let santactl = fixtures().join("santactl-export.json");
    let r = run(vec![
        "rules".into(),
        "import".into(),
        "--from".into(),
        "santactl".into(),
        s(&santactl).into(),
        "--out".into(),
        s(&imported).into(),
        "--set".into(),
        "lab".into(),
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(vec![
        "rules".into(),
        "import".into(),
        "--from".into(),
        "santactl".into(),
        s(&santactl).into(),
        "--out".into(),
        s(&imported).into(),
        "--set".into(),
        "lab".into(),
    ])
    .await;
    assert_eq!(r.code, 1, "an existing file is not overwritten without --force");
    assert!(r.stderr.contains("--force"), "{}", r.stderr);

    let plan = |dir: &Path, json: bool| {
        let mut a = vec!["rules".to_owned(), "plan".into(), s(dir).into()];
        if json {
            a.push("--json".into());
        }
        run(a)
    };
    let r = plan(&imported, true).await;
    assert_eq!(r.code, 2, "changes pending: {}", r.stderr);
    let j: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!((j["add"].as_u64(), j["change"].as_u64(), j["remove"].as_u64()), (Some(8), Some(0), Some(0)));
    assert_eq!(j["sets"]["lab"]["add"], 3);
    let r = run(vec!["rules".into(), "apply".into(), s(&imported).into()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Applied as rule version 1."), "{}", r.stdout);
    assert_eq!(plan(&imported, false).await.code, 0, "nothing left to do");

    // Export then apply is a no-op.
    let r = run(vec!["rules".into(), "export".into(), s(&exported).into()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Exported 3 rule sets, 8 rules, at rule version 1"), "{}", r.stdout);
    let r = plan(&exported, false).await;
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("No changes"), "{}", r.stdout);
    let r = run(vec!["rules".into(), "apply".into(), s(&exported).into()]).await;
    assert!(r.code == 0 && r.stdout.contains("Nothing to apply"), "{}", r.stdout);

    // A change through the file: plan shows it (exit 2), a stale --expect-version refuses.
    let lab = exported.join("lab.toml");
    let text = std::fs::read_to_string(&lab).unwrap().replace("added by hand on a test Mac", "reviewed in PR 42");
    std::fs::write(&lab, text).unwrap();
    let r = plan(&exported, false).await;
    assert_eq!(r.code, 2);
    assert!(
        r.stdout.contains("~ BINARY 84de9c61777ca36b13228e2446d53e966096e78db7a72c632b5c185b2ffe68a6 (comment)"),
        "{}",
        r.stdout
    );
    let r = run(vec!["rules".into(), "apply".into(), s(&exported).into(), "--expect-version".into(), "0".into()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("409") && r.stderr.contains("not 0 as expected"), "{}", r.stderr);
    let r = run(vec!["rules".into(), "apply".into(), s(&exported).into(), "--expect-version".into(), "1".into()]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    // One bad rule: nothing applied, the error names file, rule and field.
    std::fs::write(
        exported.join("bad.toml"),
        "[[rules]]\nidentifier = \"EQHXZ8M8AV\"\nrule_type = \"TEAMID\"\npolicy = \"CEL\"\n",
    )
    .unwrap();
    let r = run(vec!["rules".into(), "apply".into(), s(&exported).into()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.toml: rules[0] (identifier \"EQHXZ8M8AV\"): cel_expr: "), "{}", r.stderr);
    assert!(r.stderr.contains("(field sets[0].rules[0].cel_expr)"), "{}", r.stderr);

    // The other admin commands answer.
    for args in [vec!["hosts", "list"], vec!["events", "--limit", "5"], vec!["proposals", "list", "--json"]] {
        let r = run(args.iter().map(|a| (*a).to_owned()).collect()).await;
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let r = run(vec!["hosts".into(), "tag".into(), "Mac-1".into(), "kiosk".into()]).await;
    assert!(r.code == 0 && r.stdout.contains("Host Mac-1 now has tags: kiosk."), "{}", r.stdout);
    let r = run(vec!["hosts".into(), "show".into(), "Mac-1".into(), "--json".into()]).await;
    assert!(r.code == 0 && r.stdout.contains("\"kiosk\""), "{}", r.stdout);
    let r = run(vec!["plugins".into(), "list".into()]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("plugins are not configured"), "{}", r.stderr);

    // A wrong token and an unreachable server say which.
    let r = dasher(&url, "wrong", &["hosts", "list"]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("refused the admin token (401)"), "{}", r.stderr);
    let r = dasher(&url, "", &["rules", "plan", s(&exported)]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no admin token"), "{}", r.stderr);
    server.shutdown().await;
    let r = dasher(&url, "test-token", &["rules", "plan", s(&exported)]).await;
    assert_eq!(r.code, 1, "an error is 1, never the 2 of pending changes");
    assert!(r.stderr.contains(&format!("cannot reach the Dasher server at {url}")), "{}", r.stderr);
}
