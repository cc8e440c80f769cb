//! The pieces of the image-writing benchmark (ci/bench/image, docs/image.md "Measuring"),
//! built static with the agent so that what is measured is the code and the allocator that
//! ship in the ramdisk:
//!
//! - `pattern --size BYTES --out FILE`: writes the test image (see [`fill_block`]) and prints
//!   its SHA-256.
//! - `serve --dir DIR`: an HTTP/1.1 file server on 127.0.0.1 (port printed on the first
//!   line): `GET`/`HEAD`, `Range: bytes=a-b` / `bytes=a-` with `If-Range` on a strong ETag,
//!   keep-alive, the body sent with `sendfile(2)` (std's `io::copy` from a file to a socket).
//!   It runs in its own process, so it costs the writer neither CPU accounting nor memory.
//! - `write --url URL --sha256 HEX --target PATH`: the agent's `write_image` pipeline
//!   (`rivet_agent::image::pipeline::write_image`, as the deploy step calls it) from the URL
//!   to the block device or file, then prints `key=value` pairs: seconds, bytes of the file
//!   and of the image, the detected format, what the writer wrote and zeroed, and the
//!   process's peak RSS (`VmHWM`).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};
use rivet_agent::image::checksum::{Algorithm, ExpectedDigest};
use rivet_agent::image::pipeline::{write_image, WriteRequest};
use rivet_agent::image::source::DownloadOptions;
use rivet_agent::image::target::DiskFile;
use rivet_agent::net::http::HttpTls;
use rivet_agent::settings::TlsVersion;

#[derive(Parser)]
#[command(about = "Pieces of ci/bench/image")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the benchmark's test image and prints its SHA-256.
    Pattern {
        #[arg(long)]
        size: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serves the files of a directory over HTTP on 127.0.0.1.
    Serve {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Writes an image with the agent's pipeline and reports time and peak RSS.
    Write {
        #[arg(long)]
        url: String,
        #[arg(long)]
        sha256: String,
        #[arg(long)]
        target: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Pattern { size, out } => pattern(size, &out),
        Command::Serve { dir } => serve(&dir),
        Command::Write {
            url,
            sha256,
            target,
        } => write(&url, &sha256, &target),
    }
}

/// Bytes of one pattern block.
const BLOCK: usize = 64 << 10;
/// Bytes of pseudo-random data at the start of each block; the rest is text.
const RANDOM_PART: usize = 16 << 10;

/// Block `index` of the test image: 16 KiB of xorshift output seeded by the index, then
/// 48 KiB of a text line naming the block, repeated. No block is all zeros (so no writer
/// can skip or punch anything), and zstd -3 shrinks the image to about a quarter; a
/// "random-ish but compressible" stand-in for an OS image.
fn fill_block(index: u64, block: &mut [u8]) {
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for chunk in block[..RANDOM_PART].chunks_exact_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    let line = format!("rivet image benchmark, block {index:>12}, a line of text\n");
    for (i, byte) in block[RANDOM_PART..].iter_mut().enumerate() {
        *byte = line.as_bytes()[i % line.len()];
    }
}

fn pattern(size: u64, out: &Path) -> Result<()> {
    ensure!(
        size.is_multiple_of(BLOCK as u64),
        "--size must be a multiple of {BLOCK}"
    );
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(4 << 20, file);
    let mut hasher = Algorithm::Sha256.hasher();
    let mut block = vec![0u8; BLOCK];
    for index in 0..size / BLOCK as u64 {
        fill_block(index, &mut block);
        hasher.update(&block);
        writer
            .write_all(&block)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    println!("{}", hasher.finish_hex());
    Ok(())
}

fn serve(dir: &Path) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let dir = Arc::new(dir.to_owned());
    for stream in listener.incoming() {
        let stream = stream.context("accepting a connection")?;
        let dir = dir.clone();
        std::thread::spawn(move || {
            if let Err(e) = connection(stream, &dir) {
                eprintln!("image_bench serve: {e:#}");
            }
        });
    }
    Ok(())
}

/// One request's head.
struct Request {
    method: String,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
}

fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut words = line.split_whitespace();
    let (Some(method), Some(path)) = (words.next(), words.next()) else {
        bail!("malformed request line {line:?}");
    };
    let mut request = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        range: None,
        if_range: None,
    };
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = Some(value.trim().to_owned());
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => request.range = value,
                "if-range" => request.if_range = value,
                _ => {}
            }
        }
    }
    Ok(Some(request))
}

/// `bytes=a-b` or `bytes=a-` within a file of `size` bytes: the first and the end offset.
fn parse_range(spec: &str, size: u64) -> Option<(u64, u64)> {
    let (first, last) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let first: u64 = first.parse().ok()?;
    let end = match last {
        "" => size,
        last => last.parse::<u64>().ok()?.saturating_add(1).min(size),
    };
    (first < end).then_some((first, end))
}

fn connection(stream: TcpStream, dir: &Path) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    while let Some(request) = read_request(&mut reader)? {
        let name = request.path.trim_start_matches('/');
        let path = dir.join(name);
        let file = if name.is_empty() || name.contains("..") || name.contains('/') {
            None
        } else {
            std::fs::File::open(&path).ok()
        };
        let Some(mut file) = file else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let meta = file.metadata()?;
        let size = meta.len();
        let etag = format!("\"{size}-{}-{}\"", meta.mtime(), meta.mtime_nsec());
        let range = request
            .range
            .as_deref()
            .filter(|_| request.if_range.as_deref().is_none_or(|v| v == etag));
        let (status, first, end) = match range {
            Some(spec) => match parse_range(spec, size) {
                Some((first, end)) => ("206 Partial Content", first, end),
                None => {
                    write!(
                        out,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n\
                         Content-Length: 0\r\n\r\n"
                    )?;
                    continue;
                }
            },
            None => ("200 OK", 0, size),
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nETag: {etag}\r\n\
             Content-Type: application/octet-stream\r\n",
            end - first
        );
        if first != 0 || end != size {
            head.push_str(&format!(
                "Content-Range: bytes {first}-{}/{size}\r\n",
                end - 1
            ));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if request.method == "HEAD" {
            continue;
        }
        file.seek(SeekFrom::Start(first))?;
        let sent = std::io::copy(&mut (&mut file).take(end - first), &mut out)?;
        ensure!(
            sent == end - first,
            "{} shrank while being sent",
            path.display()
        );
    }
    Ok(())
}

fn write(url: &str, sha256: &str, target: &Path) -> Result<()> {
    let disk =
        Arc::new(DiskFile::open(target).with_context(|| format!("opening {}", target.display()))?);
    let urls = [url.to_owned()];
    let request = WriteRequest {
        urls: &urls,
        expected: ExpectedDigest {
            algorithm: Algorithm::Sha256,
            hex: sha256.to_owned(),
        },
        declared_format: None,
        permitted_formats: &["raw".to_owned(), "qcow2".to_owned()],
        download: DownloadOptions {
            timeout: Duration::from_secs(60),
            retries: 0,
            retry_interval: Duration::from_secs(1),
            deadline: None,
            tls: HttpTls {
                insecure: false,
                cafile: None,
                certfile: None,
                keyfile: None,
                min_version: TlsVersion::Tls12,
            },
            authorization: None,
            http_proxy: None,
            https_proxy: None,
            no_proxy: None,
        },
        known_zero: false,
        meter: None,
    };
    let started = Instant::now();
    let written = write_image(disk, &request).with_context(|| format!("writing {url}"))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "seconds={seconds:.3} file_bytes={} image_bytes={} format={} compression={} written={} zeroed={} \
         vmhwm_kib={}",
        written.file_bytes,
        written.image_bytes,
        written.detected.format.name(),
        written.detected.compression.map_or("none", |c| c.name()),
        written.stats.written,
        written.stats.zeroed,
        vm_hwm_kib()?
    );
    Ok(())
}

/// The process's peak resident set (`VmHWM` of /proc/self/status), in KiB.
fn vm_hwm_kib() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}
