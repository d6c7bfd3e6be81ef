//! Shared test fixtures: the real models and photos fetched by `models/fetch.sh`,
//! loaded once per test binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use recognition::{FacePipeline, ModelDir, PipelineConfig};

/// The fetch cache (`$FACELOCK_CACHE`, default `~/.cache/facelock`).
pub fn cache_dir() -> PathBuf {
    ModelDir::default_location()
        .parent()
        .expect("model dir has a parent")
        .to_owned()
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `models/fetch.sh` first (the tests use the real models and photos)",
        path.display()
    );
    path
}

/// `data/celeb5/{train,val}` of the sample set.
pub fn celeb5(split: &str) -> PathBuf {
    require(cache_dir().join("data/celeb5").join(split))
}

/// `data/extra/<name>`: `stranger/grace_hopper.jpg`, `noface/present.png`.
pub fn extra(name: &str) -> PathBuf {
    require(cache_dir().join("data/extra").join(name))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

pub fn models() -> ModelDir {
    let dir = require(ModelDir::default_location());
    ModelDir::open(dir).expect("model directory opens")
}

/// The pipeline with reference detector settings, loaded once.
pub fn pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        FacePipeline::load(&models(), PipelineConfig::default()).expect("pipeline loads")
    })
}

/// Copies a folder tree (photos only need to be readable).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A binary of this workspace (`lock-daemon`, `trainer`), built once per test process (the
/// test profile builds libraries only).
pub fn workspace_binary(package: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(p, _)| p == package) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            package,
            "--bin",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {package} failed");
    let exe = std::env::current_exe().unwrap();
    // target/release/deps/facelock-<hash> -> target/release/<package>
    let path = exe.parent().unwrap().parent().unwrap().join(package);
    assert!(path.exists(), "{} missing", path.display());
    built.push((package.to_owned(), path.clone()));
    path
}

/// The longest any daemon or trainer process in these tests may run: a door that never
/// re-locks, or a photo that hangs the trainer, fails the test instead of hanging it.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(120);

/// Runs a command to completion within `limit`, collecting its output (standard input
/// closed); kills it and fails the test past the limit.
pub fn output_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = wait_within(&mut child, limit);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Waits for a child to exit within `limit`; kills it and fails the test past the limit
/// (a daemon that hangs, or never re-locks and so never ends its replay).
pub fn wait_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "process {} did not exit within {limit:?}: killed it",
                child.id()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
