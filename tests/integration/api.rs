//! The control API (issue 10) through the real binary: over TCP
//! (`--listen` on loopback) with a real HTTP client, each security case a
//! test; heals with their rate limit and self-test; the log stream; the
//! audit of every mutating call.

use std::fs;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::programs::Programs;
use crate::util::{Monitor, wait_for};

const LIMIT: Duration = Duration::from_secs(20);

/// A free loopback port (bound and let go: a small race, as any test
/// server has).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client that gives every status back instead of an error.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A monitor serving `p`'s workers on a fresh loopback port, and the
/// API's base URL (it may not answer yet).
fn listening(p: &Programs) -> (Monitor, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let monitor = Monitor::spawn(
        p.pidwatch(&["run", "--listen", &addr]),
        &p.path().join("monitor.out"),
    );
    (monitor, format!("http://{addr}"))
}

/// Programs whose `[api]` has the token `token` (in `api.token`, mode
/// 0600) and then `rest` of the config; and the token file's path.
fn with_token(token: &str, rest: &str) -> (Programs, std::path::PathBuf) {
    let p = Programs::new("");
    let path = p.path().join("api.token");
    fs::write(&path, format!("{token}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    p.write_config(&format!("[api]\ntoken_file = \"api.token\"\n{rest}"));
    (p, path)
}

/// A monitor serving `p`'s workers on a fresh loopback port; returns it
/// and the API's base URL, once the API answers.
fn serve(p: &Programs) -> (Monitor, String) {
    let (monitor, base) = listening(p);
    wait_for("the API", LIMIT, || {
        agent()
            .get(format!("{base}/health"))
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    (monitor, base)
}

/// A request's status and JSON body.
fn post(base: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut request = agent().post(format!("{base}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.send(body).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = agent().get(format!("{base}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// The audit records, oldest first, as `pidwatch audit --json` gives them.
fn audit(p: &Programs) -> Vec<Value> {
    let (code, out, err) = p.run(&["audit", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    doc.as_array()
        .cloned()
        .or_else(|| doc["records"].as_array().cloned())
        .unwrap_or_default()
}

fn challenge_of(body: &Value) -> String {
    assert_eq!(body["code"], "CONFIRMATION_REQUIRED", "{body}");
    body["challenge"]["id"].as_str().unwrap().to_string()
}

#[test]
fn an_untrusted_call_is_confirmed_once_on_its_own_path_and_audited() {
    let p = Programs::new("[worker.w]\ncommand = [\"sleep\", \"1080\"]\n");
    let (_monitor, base) = serve(&p);
    wait_for("w running", LIMIT, || p.live_pid("w").is_some());
    let first = p.live_pid("w").unwrap();
    let me = [("X-Caller-Id", "someone")];
    // Reading needs nothing more on loopback without a token.
    let (status, text) = get(&base, "/workers/status", &me);
    assert_eq!(status, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["autoHeal"]["status"], "ok", "{doc}");
    // A change: challenged, nothing done.
    let (status, body) = post(&base, "/workers/restart/w", &me, "");
    assert_eq!(status, 403, "{body}");
    let id = challenge_of(&body);
    assert_eq!(body["challenge"]["path"], "/workers/restart/w");
    assert_eq!(p.live_pid("w"), Some(first));
    // The challenge on another path: refused, and spent.
    let confirmed = format!("token:{id}");
    let with = [
        ("X-Caller-Id", "someone"),
        ("X-Confirmed", confirmed.as_str()),
    ];
    let (status, body) = post(&base, "/workers/stop/w", &with, "");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "CONFIRMATION_REFUSED", "{body}");
    assert_eq!(p.live_pid("w"), Some(first), "not stopped");
    // A fresh challenge, confirmed: carried out, once.
    let (_, body) = post(&base, "/workers/restart/w", &me, "");
    let confirmed = format!("token:{}", challenge_of(&body));
    let with = [
        ("X-Caller-Id", "someone"),
        ("X-Confirmed", confirmed.as_str()),
    ];
    let (status, body) = post(&base, "/workers/restart/w", &with, "");
    assert_eq!(status, 200, "{body}");
    let second = p.live_pid("w").expect("w runs again");
    assert_ne!(second, first);
    let (status, body) = post(&base, "/workers/restart/w", &with, "");
    assert_eq!(status, 403, "a challenge is used once: {body}");
    assert_eq!(p.live_pid("w"), Some(second));
    // Every mutating call is in the audit: 2 refused, 1 confirmed, 1 refused.
    let records = audit(&p);
    let trusted: Vec<&str> = records
        .iter()
        .filter(|r| r["caller_id"] == "someone")
        .map(|r| r["trusted_by"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        trusted,
        ["refused", "refused", "refused", "confirmation", "refused"],
        "{records:?}"
    );
    let lines = fs::read_to_string(p.state().join("logs/audit.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 5, "{lines}");
    let mode = fs::metadata(p.state().join("logs/audit.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_challenge_expires() {
    let p = Programs::new(
        "[api]\nchallenge_ttl = \"1s\"\n[worker.w]\ncommand = [\"sleep\", \"1081\"]\n",
    );
    let (_monitor, base) = serve(&p);
    let me = [("X-Caller-Id", "someone")];
    let (_, body) = post(&base, "/workers/stop/w", &me, "");
    let issued = Instant::now();
    let confirmed = format!("token:{}", challenge_of(&body));
    wait_for("the challenge's TTL to pass", LIMIT, || {
        issued.elapsed() > Duration::from_millis(1500)
    });
    let with = [
        ("X-Caller-Id", "someone"),
        ("X-Confirmed", confirmed.as_str()),
    ];
    let (status, body) = post(&base, "/workers/stop/w", &with, "");
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{body}"
    );
    assert!(p.live_pid("w").is_some());
}

#[test]
fn with_a_token_nothing_is_served_without_it_and_a_trusted_caller_acts_at_once() {
    let (p, _) = with_token(
        "s3cret-token-0123456789",
        "trusted_callers = [\"ops-bot\"]\n\
         [worker.w]\ncommand = [\"sleep\", \"1082\"]\n",
    );
    let (_monitor, base) = listening(&p);
    wait_for("w running", LIMIT, || p.live_pid("w").is_some());
    wait_for("the API", LIMIT, || {
        agent()
            .get(format!("{base}/workers/status"))
            .header("Authorization", "Bearer s3cret-token-0123456789")
            .call()
            .is_ok_and(|r| r.status() == 200)
    });
    // No credential: 401, with the scheme to use.
    let response = agent()
        .get(format!("{base}/workers/status"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer")
    );
    // A wrong token of the right length: refused like any other.
    let (status, _) = get(
        &base,
        "/workers/status",
        &[("Authorization", "Bearer s3cret-token-0123456780")],
    );
    assert_eq!(status, 401);
    // The trusted caller with the token: carried out at once.
    let first = p.live_pid("w").unwrap();
    let trusted = [
        ("X-Caller-Id", "ops-bot"),
        ("Authorization", "Bearer s3cret-token-0123456789"),
    ];
    let (status, body) = post(&base, "/workers/restart/w", &trusted, "");
    assert_eq!(status, 200, "{body}");
    assert_ne!(p.live_pid("w"), Some(first));
    let records = audit(&p);
    let last = records.last().unwrap();
    assert_eq!(last["trusted_by"], "token", "{last}");
    assert_eq!(last["target"], "w");
}

#[test]
fn heals_are_planned_rate_limited_one_at_a_time_and_self_tested() {
    let (p, _) = with_token(
        "heal-token-0123456789",
        "trusted_callers = [\"ops-bot\"]\n\
         heal_max = 2\nheal_window = \"1h\"\n\
         post_heal = \"touch started; while [ ! -e go ]; do sleep 0.05; done; echo fine\"\n\
         [worker.w]\ncommand = [\"sleep\", \"1083\"]\n\
         [worker.bad]\ncommand = \"echo ran >> runs; exit 3\"\nrestart_delay = \"1h\"\nmax_restarts = 5\n",
    );
    let (_monitor, base) = listening(&p);
    let auth = ("Authorization", "Bearer heal-token-0123456789");
    let bot = [("X-Caller-Id", "ops-bot"), auth];
    // Its first restart is at once, the next an hour away.
    let runs = || {
        fs::read_to_string(p.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("bad dead, waiting for its backoff", LIMIT, || {
        runs() == 2
            && agent()
                .get(format!("{base}/workers/status"))
                .header(auth.0, auth.1)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|d| d["autoHeal"]["failing"] == serde_json::json!(["bad"]))
    });
    // A plan, asked by anyone with the token: the steps, nothing done.
    let (status, body) = post(
        &base,
        "/workers/heal",
        &[("X-Caller-Id", "someone"), auth],
        r#"{"mode": "plan"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["steps"][0]["worker"], "bad");
    assert_eq!(body["steps"][0]["action"], "restart");
    assert!(!p.path().join("started").exists());
    // The trusted caller's heal executes, and waits on its self-test.
    let first = {
        let base = base.clone();
        std::thread::spawn(move || {
            post(
                &base,
                "/workers/heal",
                &[
                    ("X-Caller-Id", "ops-bot"),
                    ("Authorization", "Bearer heal-token-0123456789"),
                ],
                r#"{"reason": "test"}"#,
            )
        })
    };
    wait_for("the self-test running", LIMIT, || {
        p.path().join("started").exists()
    });
    let (status, body) = post(&base, "/workers/heal", &bot, "");
    assert_eq!(status, 409, "one heal at a time: {body}");
    fs::write(p.path().join("go"), "").unwrap();
    let (status, body) = first.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["selfTest"]["passed"], true, "{body}");
    assert_eq!(body["actions"][0]["worker"], "bad");
    assert!(body["actions"][0]["result"].is_string(), "{body}");
    assert_eq!(body["caller"], "ops-bot");
    // The second of the window, then the rate limit.
    let (status, body) = post(&base, "/workers/heal", &bot, "");
    assert_eq!(status, 200, "{body}");
    let response = agent()
        .post(format!("{base}/workers/heal"))
        .header("X-Caller-Id", "ops-bot")
        .header(auth.0, auth.1)
        .send("")
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 3600, "{retry}");
    // status shows the last heal; the audit has each call.
    let (_, text) = get(&base, "/workers/status", &[auth]);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["lastHeal"]["caller"], "ops-bot", "{doc}");
    // And `pidwatch status`, which asks the monitor, says it.
    let (_, table, _) = p.run(&["status"]);
    assert!(
        table.contains("Last heal: ") && table.contains("by ops-bot"),
        "{table}"
    );
    let heals: Vec<u64> = audit(&p)
        .iter()
        .filter(|r| r["path"] == "/workers/heal")
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        heals,
        [409, 200, 200, 429],
        "a plan is no change and not audited"
    );
}

#[test]
fn an_oversized_body_is_refused_and_a_public_address_needs_a_token() {
    let p = Programs::new("[worker.w]\ncommand = [\"sleep\", \"1084\"]\n");
    let (_monitor, base) = serve(&p);
    let big = "x".repeat(70 * 1024);
    let (status, body) = post(&base, "/workers/heal", &[], &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    let (status, text) = get(&base, "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(text.contains("pidwatch_worker_up{worker=\"w\"}"), "{text}");
    let (status, text) = get(&base, "/", &[]);
    assert_eq!(status, 200);
    assert!(text.contains("<title>pidwatch</title>"));
    // Another monitor of the same config could not start anyway (the
    // lock); a non-loopback address without a token is refused before.
    let q = Programs::new("[worker.w]\ncommand = [\"sleep\", \"1085\"]\n");
    let out = q
        .pidwatch(&["run", "--listen", "0.0.0.0:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain HTTP only on loopback"), "{err}");
}

#[test]
fn a_workers_log_streams_as_server_sent_events() {
    let p =
        Programs::new("[worker.ticker]\ncommand = \"while :; do echo tick; sleep 0.1; done\"\n");
    let (_monitor, base) = serve(&p);
    let response = agent()
        .get(format!("{base}/workers/logs/ticker?lines=1&follow=1"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap()),
        Some("text/event-stream")
    );
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let events = reader
        .lines()
        .map_while(Result::ok)
        .filter(|l| l == "data: tick")
        .take(3)
        .count();
    assert_eq!(events, 3);
    let (status, text) = get(&base, "/workers/logs/ticker?lines=2", &[]);
    assert_eq!(status, 200, "{text}");
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["lines"], serde_json::json!(["tick", "tick"]));
}

#[test]
fn the_cli_reaches_a_monitor_by_url_with_a_token_and_says_when_none_answers() {
    let (p, token) = with_token(
        "url-token-0123456789",
        "trusted_callers = [\"ops\"]\n\
         [worker.w]\ncommand = [\"sleep\", \"1086\"]\ninstances = 2\n",
    );
    let (_monitor, base) = listening(&p);
    wait_for("both running", LIMIT, || {
        p.live_pid("w@1").is_some() && p.live_pid("w@2").is_some()
    });
    let url = base;
    let elsewhere = tempfile::tempdir().unwrap();
    let cli = |args: &[&str], caller: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pidwatch"));
        cmd.current_dir(elsewhere.path())
            .env("HOME", elsewhere.path())
            .env_remove("PIDWATCH_CONFIG")
            .env_remove("PIDWATCH_CALLER_ID")
            .args(["--url", &url, "--token-file", &token.display().to_string()])
            .args(args)
            .stdin(std::process::Stdio::null());
        if let Some(caller) = caller {
            cmd.env("PIDWATCH_CALLER_ID", caller);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No config here: the status is the monitor's.
    let (code, out, err) = cli(&["status", "--json"], None);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("w@2"), "{out}");
    // An untrusted change with no terminal to confirm on: refused, said.
    let (code, _, err) = cli(&["stop", "w@1"], None);
    assert_eq!(code, Some(3));
    assert!(err.contains("confirmation"), "{err}");
    assert!(p.live_pid("w@1").is_some());
    // The trusted caller: done, by name for both instances.
    let (code, out, err) = cli(&["stop", "w"], Some("ops"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("w@1:") && out.contains("w@2:"), "{out}");
    assert!(p.live_pid("w@1").is_none() && p.live_pid("w@2").is_none());
    // Nobody at the URL: said, exit 3, nothing done here.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pidwatch"))
        .current_dir(elsewhere.path())
        .args(["--url", &dead, "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no monitor answers at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_orchestrator_monitor_serves_reads_and_refuses_heals_it_cannot_do() {
    use pidwatch::control::{ControlRequest, api::HealMode, client};
    let mut fx = crate::util::Fixture::new();
    fx.task("S", "in_progress", &[]);
    fx.start_worker("S", "sleep 1087");
    let _monitor = fx.monitor(&["--restart-delay", "0"]);
    fx.wait_first_pass();
    let socket = fx.dir.join("control.sock");
    wait_for("the control socket", LIMIT, || socket.exists());
    let mode = fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let status = client::call(&socket, &ControlRequest::Status, LIMIT).unwrap();
    assert_eq!(status.status, 200, "{:?}", status.body);
    assert_eq!(status.body["workers"][0]["id"], "S");
    assert_eq!(status.body["autoHeal"]["status"], "ok");
    let heal = ControlRequest::Heal {
        mode: HealMode::Execute,
        reason: None,
        caller: None,
    };
    let refused = client::call(&socket, &heal, LIMIT).unwrap();
    assert_eq!(refused.status, 409, "{:?}", refused.body);
}

#[test]
fn pidwatch_heal_plans_and_executes_through_the_socket() {
    let p = Programs::new(
        "[worker.w]\ncommand = [\"sleep\", \"1088\"]\n\
         [worker.bad]\ncommand = \"echo ran >> runs; exit 3\"\nrestart_delay = \"1h\"\nmax_restarts = 5\n",
    );
    let _monitor = Monitor::spawn(p.pidwatch(&["run"]), &p.path().join("monitor.out"));
    let runs = || {
        fs::read_to_string(p.path().join("runs"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    // Its first restart is at once; the next an hour away.
    wait_for("bad dead, its next restart an hour away", LIMIT, || {
        runs() == 2 && p.verdict("bad") == "dead"
    });
    let (code, out, err) = p.run(&["heal", "--plan"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("restart bad: dead"), "{out}");
    assert_eq!(runs(), 2, "a plan changes nothing");
    // Executed: bad restarted at once. (It fails again: exit 1 when the
    // heal saw it dead, 0 when it saw it up for the moment it ran.)
    let (code, out, err) = p.run(&["heal", "--reason", "test"]);
    assert!(code == 0 || code == 1, "{out} {err}");
    assert!(
        out.contains("restart bad: dead") && out.contains(" -> "),
        "{out}"
    );
    wait_for("bad restarted once more", LIMIT, || runs() >= 3);
    assert_eq!(runs(), 3, "restarted once, not waiting for its backoff");
    // Counted against its cap.
    let status = p.status();
    let bad = crate::util::worker(&status, "bad");
    assert!(bad["attempts"].as_u64().unwrap_or(0) >= 1, "{bad}");
    // No monitor: said.
    drop(_monitor);
    let (code, _, err) = p.run(&["heal"]);
    assert_eq!(code, 3);
    assert!(err.contains("no monitor runs"), "{err}");
}
