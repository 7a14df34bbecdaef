//! The container image and its compose file, without Docker:
//!
//! * `scripts/build-image.sh` builds the image with buildah from the debug
//!   examples the other end-to-end tests build; the image's own server
//!   binary then runs from the image's root file system (`buildah mount`,
//!   `chroot` as the image's non-root user) and answers `GET /healthz`,
//!   and the image's HEALTHCHECK command exits 0 while it is up and 1 once
//!   it is gone. `buildah inspect` shows the configuration the Dockerfile's
//!   final stage declares.
//! * hadolint accepts the Dockerfile.
//! * `deploy/compose.yaml` holds together: every service it needs, health
//!   checks behind every `service_healthy`, backend URLs naming its own
//!   services, and only `FLASHSALE_*` variables the binaries' `--help`
//!   lists; promtool accepts `deploy/prometheus.yml`.
//!
//! buildah, hadolint and a Python with PyYAML come from
//! `scripts/install-image-tools.sh` (promtool from
//! `scripts/install-promtool.sh`), both run by `scripts/test-all.sh`. Where
//! one is missing, or the test does not run as root (chroot and buildah's
//! vfs storage need it), the checks that need it are skipped with a
//! message, except under `CI=true`, where that is a failure.
#![cfg(all(feature = "redis", feature = "mysql", feature = "kafka"))]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "common/servers.rs"]
mod servers;
use servers::examples_dir;

const TAG: &str = "localhost/flashsale:test";
/// The image's user, as `chroot --userspec` takes it.
const USER: &str = "10001:10001";
/// Example name -> path in the image (scripts/build-image.sh).
const BINARIES: [(&str, &str); 3] = [
    ("axum_server", "/usr/local/bin/flashsale-server"),
    ("actix_server", "/usr/local/bin/flashsale-server-actix"),
    ("order_worker", "/usr/local/bin/flashsale-order-worker"),
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Says why a check cannot run: a failure under `CI=true`, else a skip.
fn unavailable(check: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{check}: {why} under CI=true"
    );
    eprintln!("SKIPPED {check}: {why}");
}

fn in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `$FLASHSALE_TOOLS_DIR/py-image-tools-*/bin/<name>`, newest version
/// first, where scripts/install-image-tools.sh puts hadolint and Python.
fn in_tools_venv(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("FLASHSALE_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/flashsale")))?;
    let mut venvs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("py-image-tools-"))
        })
        .collect();
    venvs.sort();
    venvs
        .into_iter()
        .rev()
        .map(|v| v.join("bin").join(name))
        .find(|p| p.is_file())
}

fn hadolint() -> Option<PathBuf> {
    std::env::var_os("FLASHSALE_HADOLINT")
        .map(PathBuf::from)
        .or_else(|| in_tools_venv("hadolint"))
        .or_else(|| in_path("hadolint"))
}

/// A Python that imports `yaml`.
fn python_with_yaml() -> Option<PathBuf> {
    std::env::var_os("FLASHSALE_IMAGE_PYTHON")
        .map(PathBuf::from)
        .or_else(|| in_tools_venv("python"))
        .into_iter()
        .chain(in_path("python3"))
        .find(|py| {
            Command::new(py)
                .args(["-c", "import yaml"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `cmd`; panics with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `buildah` on the test's own storage (vfs, chroot isolation).
#[derive(Clone)]
struct Buildah {
    bin: PathBuf,
    storage: PathBuf,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("BUILDAH_ISOLATION", "chroot")
            .arg("--storage-driver")
            .arg("vfs")
            .arg("--root")
            .arg(self.storage.join("root"))
            .arg("--runroot")
            .arg(self.storage.join("run"));
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = run_ok(self.cmd().args(args));
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    }
}

/// A working container of the image, mounted; unmounted and removed when
/// dropped, whether the test passed or not.
struct Mounted {
    buildah: Buildah,
    name: String,
    root: PathBuf,
}

impl Mounted {
    fn new(buildah: &Buildah, image: &str) -> Mounted {
        let name = format!("flashsale-image-test-{}", std::process::id());
        // A container of that name left by a killed run of this process id.
        let _ = buildah.cmd().args(["rm", &name]).output();
        buildah.run(&["from", "--pull=never", "--quiet", "--name", &name, image]);
        let mut mounted = Mounted {
            buildah: buildah.clone(),
            name,
            root: PathBuf::new(),
        };
        mounted.root = PathBuf::from(buildah.run(&["mount", &mounted.name]));
        mounted
    }

    /// `chroot` into the image's files as the image's user, with only `env`.
    fn chroot(&self, argv: &[String], env: &BTreeMap<String, String>) -> Command {
        // By its path: the cleared environment has no PATH to search.
        let chroot = in_path("chroot").unwrap_or_else(|| PathBuf::from("/usr/sbin/chroot"));
        let mut cmd = Command::new(chroot);
        cmd.arg(format!("--userspec={USER}"))
            .arg(&self.root)
            .args(argv)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for args in [["umount", &self.name], ["rm", &self.name]] {
            let out = self.buildah.cmd().args(args).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("cleanup: buildah {} {} failed: {out:?}", args[0], args[1]);
            }
        }
    }
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The instructions of the Dockerfile's last stage, continuation lines
/// joined: `(INSTRUCTION, arguments)`.
fn final_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head.trim_end());
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    let last_from = instructions
        .iter()
        .rposition(|(op, _)| op == "FROM")
        .expect("a FROM");
    instructions.split_off(last_from)
}

/// Go's duration strings as the Dockerfile writes them (`10s`), in ns.
fn nanos(duration: &str) -> u64 {
    let secs: u64 = duration
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected duration {duration:?}"));
    secs * 1_000_000_000
}

/// Asserts that the image's configuration is what the Dockerfile's final
/// stage declares, so both ways of building give the same image.
fn assert_config_matches_dockerfile(config: &Value) {
    let dockerfile =
        std::fs::read_to_string(manifest_dir().join("Dockerfile")).expect("the Dockerfile");
    let stage = final_stage(&dockerfile);
    assert_eq!(stage[0], ("FROM".into(), "scratch".into()), "{stage:?}");
    let one = |op: &str| -> String {
        let found: Vec<&String> = stage
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, a)| a)
            .collect();
        assert_eq!(found.len(), 1, "one {op} in the final stage: {stage:?}");
        found[0].clone()
    };
    assert_eq!(one("COPY"), "--from=builder /rootfs/ /");
    assert!(
        dockerfile
            .contains("scripts/build-image.sh --bin-dir target/release/examples --rootfs /rootfs"),
        "the builder stage lays the files out with scripts/build-image.sh"
    );
    assert_eq!(config["User"], one("USER"), "USER");
    assert_eq!(config["User"], USER);
    let port = one("EXPOSE");
    assert!(config["ExposedPorts"].get(&port).is_some(), "EXPOSE {port}");
    let env = strings(&config["Env"]);
    assert!(env.contains(&one("ENV")), "ENV: {env:?}");
    let entrypoint: Value = serde_json::from_str(&one("ENTRYPOINT")).expect("exec form");
    assert_eq!(config["Entrypoint"], entrypoint, "ENTRYPOINT");

    let healthcheck = one("HEALTHCHECK");
    let (options, test) = healthcheck.split_once("CMD ").expect("HEALTHCHECK ... CMD");
    let test: Vec<String> = serde_json::from_str(test).expect("exec form");
    let hc = &config["Healthcheck"];
    assert_eq!(
        strings(&hc["Test"]),
        [vec!["CMD".to_owned()], test].concat()
    );
    for option in options.split_whitespace() {
        let (key, value) = option
            .strip_prefix("--")
            .and_then(|o| o.split_once('='))
            .unwrap_or_else(|| panic!("HEALTHCHECK option {option:?}"));
        let (field, expected) = match key {
            "interval" => ("Interval", nanos(value)),
            "timeout" => ("Timeout", nanos(value)),
            "start-period" => ("StartPeriod", nanos(value)),
            "retries" => ("Retries", value.parse().expect("a number")),
            other => panic!("unexpected HEALTHCHECK option {other}"),
        };
        assert_eq!(hc[field].as_u64(), Some(expected), "HEALTHCHECK --{key}");
    }

    let label = one("LABEL");
    let mut rest = label.as_str();
    let mut labels = 0;
    while let Some((key, tail)) = rest.trim_start().split_once("=\"") {
        let (value, tail) = tail.split_once('"').expect("a quoted value");
        assert_eq!(config["Labels"][key], value, "LABEL {key}");
        labels += 1;
        rest = tail;
    }
    assert!(labels >= 3, "{label}");
}

/// Every file of the image: owned by root, not writable by the image's
/// user, no shell.
fn assert_files(root: &Path) {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("readable") {
            let path = entry.expect("an entry").path();
            if path.is_dir() && !path.is_symlink() {
                walk(&path, files);
            }
            files.push(path);
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    for path in &files {
        let meta = std::fs::symlink_metadata(path).expect("metadata");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{}", path.display());
        assert_eq!(meta.mode() & 0o022, 0, "{} is writable", path.display());
    }
    for (_, bin) in BINARIES {
        assert!(root.join(&bin[1..]).is_file(), "{bin} is in the image");
    }
    assert!(!root.join("bin/sh").exists(), "the image has no shell");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("flashsale:x:{USER}:"))),
        "{passwd}"
    );
    let libs: Vec<String> = files
        .iter()
        .filter(|p| p.to_string_lossy().contains(".so"))
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    eprintln!("shared libraries in the image: {libs:?}");
    assert!(
        libs.iter().any(|l| l.contains("ld-linux")),
        "the dynamic loader is in the image: {libs:?}"
    );
}

async fn get(url: &str) -> Result<u16, String> {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn image_runs_its_server_and_healthcheck() {
    let check = "the container image test";
    let Some(buildah_bin) = in_path("buildah") else {
        return unavailable(
            check,
            "buildah is not installed (scripts/install-image-tools.sh)",
        );
    };
    if !is_root() {
        return unavailable(check, "it needs root (buildah's vfs storage, chroot)");
    }
    let examples = examples_dir();
    // <target>/container-image: the test's own image storage, anew each run.
    let storage = examples
        .parent()
        .and_then(Path::parent)
        .expect("<target>/debug/examples")
        .join("container-image");
    if storage.exists() {
        std::fs::remove_dir_all(&storage).expect("removing the old image storage");
    }
    let buildah = Buildah {
        bin: buildah_bin,
        storage: storage.clone(),
    };

    let started = Instant::now();
    let out = run_ok(
        Command::new(manifest_dir().join("scripts/build-image.sh"))
            .arg("--bin-dir")
            .arg(examples)
            .args(["--tag", TAG, "--storage"])
            .arg(&storage),
    );
    eprintln!(
        "{}{}(build-image.sh took {:.1} s)",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        started.elapsed().as_secs_f64()
    );

    let inspect: Value =
        serde_json::from_str(&buildah.run(&["inspect", "--type", "image", TAG])).expect("JSON");
    let config = &inspect["Docker"]["config"];
    assert_config_matches_dockerfile(config);
    assert_eq!(
        strings(&config["Entrypoint"]),
        [BINARIES[0].1],
        "the axum server is the entrypoint"
    );

    let image = Mounted::new(&buildah, TAG);
    assert_files(&image.root);

    // The image's environment, with a free loopback port for the listener.
    let mut env: BTreeMap<String, String> = strings(&config["Env"])
        .iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("K=V");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(env["FLASHSALE_LISTEN"], "0.0.0.0:8080");
    let port = free_port();
    env.insert("FLASHSALE_LISTEN".into(), format!("127.0.0.1:{port}"));
    env.insert("RUST_LOG".into(), "warn".into());

    // Every binary starts from the image's files (its libraries resolve).
    for (_, bin) in BINARIES {
        let out = run_ok(&mut image.chroot(&[bin.to_owned(), "--help".to_owned()], &env));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("ENVIRONMENT:"),
            "{bin} --help"
        );
    }

    let healthcheck: Vec<String> = strings(&config["Healthcheck"]["Test"])[1..].to_vec();
    let probe = |listen: &str| {
        let mut env = env.clone();
        env.insert("FLASHSALE_LISTEN".into(), listen.to_owned());
        image
            .chroot(&healthcheck, &env)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the healthcheck runs")
            .code()
    };

    let entrypoint = strings(&config["Entrypoint"]);
    let mut server = Running(
        image
            .chroot(&entrypoint, &env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the image's server starts"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match get(&format!("{base}/healthz")).await {
            Ok(200) => break,
            other => {
                if let Some(status) = server.0.try_wait().expect("wait") {
                    panic!("the image's server exited ({status}) before /healthz answered");
                }
                assert!(
                    Instant::now() < deadline,
                    "GET /healthz: {other:?} after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(get(&format!("{base}/readyz")).await, Ok(200), "/readyz");
    let uid = std::fs::read_to_string(format!("/proc/{}/status", server.0.id()))
        .expect("the server's status")
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .expect("a Uid line");
    assert_eq!(
        uid, "10001 10001 10001 10001",
        "the server runs as the image's user"
    );

    assert_eq!(probe(&format!("127.0.0.1:{port}")), Some(0), "healthy");
    // As the image says it: the wildcard address, probed on loopback.
    assert_eq!(probe(&format!("0.0.0.0:{port}")), Some(0), "healthy");

    server.0.kill().expect("kill");
    server.0.wait().expect("wait");
    assert_eq!(
        probe(&format!("0.0.0.0:{port}")),
        Some(1),
        "unhealthy once stopped"
    );
    eprintln!(
        "container image test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = hadolint() else {
        return unavailable(
            "hadolint Dockerfile",
            "hadolint is not installed (scripts/install-image-tools.sh)",
        );
    };
    let version = run_ok(Command::new(&hadolint).arg("--version"));
    eprintln!("{}", String::from_utf8_lossy(&version.stdout).trim());
    // No configuration file: every rule, findings of any level fail.
    let out = Command::new(&hadolint)
        .args(["--no-color", "--failure-threshold", "info", "Dockerfile"])
        .current_dir(manifest_dir())
        .env_remove("HADOLINT_IGNORE")
        .output()
        .expect("hadolint runs");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "hadolint Dockerfile ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfile =
        std::fs::read_to_string(manifest_dir().join("Dockerfile")).expect("the Dockerfile");
    assert!(
        !dockerfile.contains("hadolint ignore"),
        "no rule is switched off"
    );
}

/// The `FLASHSALE_*` variables an example's `--help` lists.
fn help_variables(example: &str) -> BTreeSet<String> {
    let out = run_ok(Command::new(examples_dir().join(example)).arg("--help"));
    let help = String::from_utf8(out.stdout).expect("UTF-8");
    let vars: BTreeSet<String> = help
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("FLASHSALE_"))
        .map(str::to_owned)
        .collect();
    assert!(vars.len() >= 3, "{example} --help: {help}");
    vars
}

/// `host` of `scheme://[user[:pass]@]host:port[/...]` or `host:port`.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split([':', '/']).next().unwrap_or(rest)
}

fn yaml_as_json(python: &Path, file: &Path) -> Value {
    let out = run_ok(
        Command::new(python)
            .args([
                "-c",
                "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            ])
            .arg(file),
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn compose_file_holds_together() {
    let deploy = manifest_dir().join("deploy");
    let text = std::fs::read_to_string(deploy.join("compose.yaml")).expect("deploy/compose.yaml");

    // The development secret is marked as such, where it is set.
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim_start().starts_with("FLASHSALE_JWT_SECRET:"))
        .expect("compose sets FLASHSALE_JWT_SECRET");
    assert!(
        lines[at.saturating_sub(3)..at]
            .iter()
            .any(|l| l.contains("DEVELOPMENT ONLY")),
        "a DEVELOPMENT ONLY comment right above FLASHSALE_JWT_SECRET"
    );

    let Some(python) = python_with_yaml() else {
        return unavailable(
            "parsing deploy/compose.yaml",
            "no Python with PyYAML (scripts/install-image-tools.sh)",
        );
    };
    let compose = yaml_as_json(&python, &deploy.join("compose.yaml"));
    let services = compose["services"].as_object().expect("services");
    for name in [
        "axum-server",
        "actix-server",
        "order-worker",
        "redis",
        "mariadb",
        "kafka",
        "kafka-topics",
        "prometheus",
    ] {
        assert!(services.contains_key(name), "service {name}");
    }

    let variables: BTreeMap<&str, BTreeSet<String>> = BINARIES
        .iter()
        .map(|(example, bin)| (*bin, help_variables(example)))
        .collect();
    let mut ours = 0;
    for (name, service) in services {
        // Every dependency is waited for by a condition that can be met.
        if let Some(deps) = service.get("depends_on") {
            for (dep, how) in deps.as_object().expect("depends_on as a map") {
                let target = &services[dep];
                match how["condition"].as_str() {
                    Some("service_healthy") => assert!(
                        target["healthcheck"]["test"].is_array()
                            || (target["image"] == services["axum-server"]["image"]
                                && target["healthcheck"]["disable"] != true),
                        "{name} waits for {dep} to be healthy, which has no healthcheck"
                    ),
                    Some("service_completed_successfully") => {
                        assert_eq!(target["restart"], "no", "{dep} is one-shot")
                    }
                    other => panic!("{name} depends on {dep} with condition {other:?}"),
                }
            }
        }
        let Some(image) = service["image"].as_str() else {
            panic!("{name} has no image")
        };
        assert!(
            (image.contains(':') && !image.ends_with(":latest")) || image.starts_with("localhost/"),
            "{name}: pin the image's version ({image})"
        );
        if !image.starts_with("localhost/flashsale") {
            continue;
        }
        // One of the image's binaries, built from the Dockerfile.
        ours += 1;
        assert_eq!(service["build"]["context"], "..", "{name}");
        assert_eq!(service["build"]["dockerfile"], "Dockerfile", "{name}");
        let bin = match service.get("entrypoint") {
            Some(e) => strings(e)[0].clone(),
            None => BINARIES[0].1.to_owned(),
        };
        let known = variables
            .get(bin.as_str())
            .unwrap_or_else(|| panic!("{name} runs {bin}, which is not in the image"));
        let env = service["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: environment as a map"));
        for (key, value) in env {
            let value = value.as_str().unwrap_or_else(|| panic!("{name}: {key}"));
            if key.starts_with("FLASHSALE_") {
                assert!(
                    known.contains(key),
                    "{name} sets {key}, which `{bin} --help` does not list: {known:?}"
                );
            }
            match key.as_str() {
                "FLASHSALE_REDIS_URL" | "FLASHSALE_DATABASE_URL" | "FLASHSALE_KAFKA_BROKERS" => {
                    let host = host_of(value);
                    assert!(
                        services.contains_key(host),
                        "{name}: {key} names {host}, not a service"
                    );
                    let dep = &service["depends_on"][host]["condition"];
                    assert!(
                        dep == "service_healthy"
                            || (host == "kafka"
                                && service["depends_on"]["kafka-topics"]["condition"]
                                    == "service_completed_successfully"),
                        "{name} does not wait for {host}"
                    );
                }
                "FLASHSALE_LISTEN" => assert_eq!(value, "0.0.0.0:8080", "{name}"),
                "FLASHSALE_KAFKA_TOPIC" => assert_eq!(value, "flashsale.orders", "{name}"),
                "FLASHSALE_JWT_SECRET" => {
                    assert!(value.len() >= 32, "{name}: the secret is too short");
                    assert!(value.contains("DEVELOPMENT"), "{name}: {value}");
                }
                _ => {}
            }
        }
        if bin == BINARIES[2].1 {
            assert_eq!(
                service["healthcheck"]["disable"], true,
                "{name}: the worker serves no /healthz"
            );
        }
    }
    assert_eq!(ours, 3, "two servers and the worker run the image");

    // Both topics are created before anything uses them.
    let topics = services["kafka-topics"].to_string();
    for topic in ["flashsale.orders", "flashsale.orders.dlq"] {
        assert!(topics.contains(topic), "kafka-topics creates {topic}");
    }

    // Prometheus scrapes both servers with the mounted configuration.
    let prometheus = &services["prometheus"];
    assert!(
        strings(&prometheus["volumes"])
            .iter()
            .any(|v| v.starts_with("./prometheus.yml:/etc/prometheus/prometheus.yml")),
        "{prometheus}"
    );
    let scrape = yaml_as_json(&python, &deploy.join("prometheus.yml"));
    let targets: BTreeSet<String> = scrape["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| {
            job["static_configs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|sc| strings(&sc["targets"]))
        .collect();
    for server in ["axum-server", "actix-server"] {
        assert!(
            targets.contains(&format!("{server}:8080")),
            "prometheus scrapes {server}: {targets:?}"
        );
        assert_eq!(
            prometheus["depends_on"][server]["condition"], "service_healthy",
            "prometheus waits for {server}"
        );
    }
    match Command::new("promtool")
        .args(["check", "config"])
        .arg(deploy.join("prometheus.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check config deploy/prometheus.yml:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => unavailable(
            "promtool check config deploy/prometheus.yml",
            "promtool is not installed (scripts/install-promtool.sh)",
        ),
        Err(e) => panic!("running promtool: {e}"),
    }
}
