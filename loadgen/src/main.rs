//! Phones benchmark: simulates N phones of the real Android app against a running service.
//!
//! Each phone behaves like the app (issue 19): it takes a fix every `--fix-secs` (60 s) while
//! moving and every `--burst-secs` (15 min) uploads the queued fixes one request each, back to
//! back, over a fresh connection (`POST /api/v1/locations`, app key + device token, no
//! `Idempotency-Key`). A share of the phones (`--map-share`, 10 %) has the map open: it polls the
//! group listing every `--poll-secs` (15 s) over a kept-alive connection (`--map poll`) or holds
//! one live stream (`--map stream`, `GET /api/v1/groups/{id}/stream`). Every phone re-registers
//! about once a `--register-secs` (a day), over a fresh connection.
//!
//! Phases are spread uniformly (each phone's burst offset is random in one period), so any
//! window of the run sees the steady-state rates: N / 900 bursts per second, N / 60 fixes per
//! second. Requests are scheduled (open loop): a burst starts at its time whether or not earlier
//! ones finished, and how late the generator starts them is reported (`lag`), so an overloaded
//! generator shows. Only what starts after `--warmup` is measured.
//!
//! Input: `--phones-file`, one phone a line, tab-separated: device_id, group_id, display_name,
//! device_token (scripts/load/phones.sh writes it from the seeded database).
//! Output: one JSON object on stdout (counts, errors, latency percentiles in ms per request
//! type, stream events).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpSocket;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MapMode {
    /// Map-open phones poll `GET /api/v1/devices?group_id=` every `--poll-secs`.
    Poll,
    /// Map-open phones hold one live stream each.
    Stream,
    /// Nobody has the map open.
    None,
}

#[derive(Parser, Debug)]
struct Args {
    /// Service addresses, comma-separated (`127.0.0.1:18080,127.0.0.1:18081`): phone i talks
    /// to address i mod count, as behind a load balancer.
    #[arg(long, value_delimiter = ',')]
    addr: Vec<SocketAddr>,
    /// The `app` API key every install ships.
    #[arg(long)]
    key: String,
    #[arg(long)]
    phones_file: String,
    /// How many phones of the file to simulate (the first N).
    #[arg(long)]
    phones: usize,
    /// Seconds of the run, warm-up included.
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// Seconds at the start left out of the figures (streams and pollers connect meanwhile).
    #[arg(long, default_value_t = 30)]
    warmup: u64,
    #[arg(long, value_enum, default_value_t = MapMode::Stream)]
    map: MapMode,
    #[arg(long, default_value_t = 0.10)]
    map_share: f64,
    #[arg(long, default_value_t = 900)]
    burst_secs: u64,
    #[arg(long, default_value_t = 60)]
    fix_secs: u64,
    #[arg(long, default_value_t = 15)]
    poll_secs: u64,
    #[arg(long, default_value_t = 86_400)]
    register_secs: u64,
    /// Loopback source addresses to spread client sockets over (127.0.0.2 …): one address has
    /// ~28k ephemeral ports, and fresh connections per burst leave TIME_WAITs behind.
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// `g/k`: simulate only this process's share of the phones (descriptors are per process, so
    /// many streams need several generator processes). Uploads: phone i where i mod k = g;
    /// map-open phones: the j-th where j mod k = g.
    #[arg(long, default_value = "0/1", value_parser = parse_shard)]
    shard: (usize, usize),
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (g, k) = s.split_once('/').ok_or("expected g/k")?;
    let (g, k): (usize, usize) = (g.parse().map_err(|_| "g")?, k.parse().map_err(|_| "k")?);
    if k == 0 || g >= k {
        return Err("expected 0 <= g < k".into());
    }
    Ok((g, k))
}

struct Phone {
    device_id: String,
    group_id: String,
    name: String,
    token: String,
}

#[derive(Default)]
struct Kind {
    latencies_us: Mutex<Vec<u32>>,
    ok: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Kind {
    fn record(&self, started: Instant, outcome: Result<u16, String>, measured: bool) {
        if !measured {
            return;
        }
        match outcome {
            Ok(status) if status < 400 => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                self.latencies_us.lock().unwrap().push(us);
            }
            Ok(status) => self.error(format!("status {status}")),
            Err(e) => self.error(e),
        }
    }
    fn error(&self, reason: String) {
        *self.errors.lock().unwrap().entry(reason).or_default() += 1;
    }
    fn summary(&self, seconds: f64) -> serde_json::Value {
        let mut l = self.latencies_us.lock().unwrap().clone();
        l.sort_unstable();
        let pct = |p: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * l.len() as f64).ceil() as usize;
            l[i.clamp(1, l.len()) - 1] as f64 / 1000.0
        };
        let errors = self.errors.lock().unwrap().clone();
        let n_err: u64 = errors.values().sum();
        json!({
            "ok": self.ok.load(Ordering::Relaxed),
            "errors": n_err,
            "error_kinds": errors,
            "rate_per_s": (self.ok.load(Ordering::Relaxed) + n_err) as f64 / seconds,
            "p50_ms": pct(50.0), "p95_ms": pct(95.0), "p99_ms": pct(99.0), "max_ms": pct(100.0),
        })
    }
}

#[derive(Default)]
struct Stats {
    upload: Kind,
    list: Kind,
    register: Kind,
    stream_open: Kind,
    /// How late the generator started scheduled work (bursts, polls), in µs.
    lag_us: Mutex<Vec<u32>>,
    events: Mutex<BTreeMap<String, u64>>,
    streams_open: AtomicU64,
    streams_ended: AtomicU64,
}

struct Ctx {
    args: Args,
    stats: Stats,
    start: Instant,
    warmup_end: Instant,
    end: Instant,
}

impl Ctx {
    fn measured(&self, at: Instant) -> bool {
        at >= self.warmup_end && at < self.end
    }
    fn lag(&self, scheduled: Instant) {
        let now = Instant::now();
        if self.measured(now) {
            let us = now.saturating_duration_since(scheduled).as_micros().min(u32::MAX as u128);
            self.stats.lag_us.lock().unwrap().push(us as u32);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn connect(ctx: &Ctx, i: usize) -> Result<SendRequest<Full<Bytes>>, String> {
    let addr = ctx.args.addr[i % ctx.args.addr.len()];
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    if ctx.args.source_ips > 0 {
        let ip = Ipv4Addr::new(127, 0, 0, 2 + (i % ctx.args.source_ips as usize) as u8);
        socket.bind(SocketAddr::new(ip.into(), 0)).map_err(|e| format!("bind: {}", e.kind()))?;
    }
    socket.set_nodelay(true).ok();
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| format!("connect: {}", e.kind()))?;
    let (sender, conn) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

fn request(
    ctx: &Ctx,
    phone: &Phone,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "phone-manager")
        .header("x-api-key", &ctx.args.key)
        .header("authorization", format!("Bearer {}", phone.token))
        .header("user-agent", "loadgen-phone");
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap()
}

async fn send(sender: &mut SendRequest<Full<Bytes>>, req: Request<Full<Bytes>>) -> Result<u16, String> {
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let res = tokio::time::timeout(Duration::from_secs(30), async {
        let res = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
        let status = res.status().as_u16();
        res.into_body().collect().await.map_err(|e| format!("body: {e}"))?;
        Ok::<u16, String>(status)
    })
    .await
    .map_err(|_| "timeout 30s".to_string())??;
    Ok(res)
}

/// Every `burst_secs`, from a random offset: the queued fixes, one request each, back to back,
/// over a fresh connection.
async fn phone_uploads(ctx: Arc<Ctx>, phones: Arc<Vec<Phone>>, i: usize) {
    let a = &ctx.args;
    let per_burst = (a.burst_secs / a.fix_secs).max(1);
    let mut at = ctx.start + Duration::from_secs_f64(rand::random::<f64>() * a.burst_secs as f64);
    let phone = &phones[i];
    let (mut lat, mut lon) = (rand::random_range(-60.0..60.0f64), rand::random_range(-170.0..170.0f64));
    while at < ctx.end {
        tokio::time::sleep_until(at.into()).await;
        ctx.lag(at);
        let burst_ms = now_ms();
        let measured = ctx.measured(Instant::now());
        match connect(&ctx, i).await {
            Err(e) => {
                for _ in 0..per_burst {
                    ctx.stats.upload.record(Instant::now(), Err(e.clone()), measured);
                }
            }
            Ok(mut sender) => {
                for k in 0..per_burst {
                    lat += rand::random_range(-0.001..0.001);
                    lon += rand::random_range(-0.001..0.001);
                    let captured = burst_ms - ((per_burst - 1 - k) * a.fix_secs * 1000) as i64;
                    let body = json!({
                        "device_id": phone.device_id, "timestamp": captured,
                        "latitude": lat, "longitude": lon, "accuracy": 12.5,
                        "battery_level": 80, "speed": 1.4, "provider": "fused",
                    })
                    .to_string();
                    let req = request(&ctx, phone, Method::POST, "/api/v1/locations", Some(body));
                    let started = Instant::now();
                    let outcome = send(&mut sender, req).await;
                    let failed = outcome.is_err();
                    ctx.stats.upload.record(started, outcome, measured);
                    if failed {
                        break; // the app retries later; the connection is gone
                    }
                }
            }
        }
        at += Duration::from_secs(a.burst_secs);
    }
}

/// About once a `register_secs`: re-registration on app start, over a fresh connection.
async fn phone_registers(ctx: Arc<Ctx>, phones: Arc<Vec<Phone>>, i: usize) {
    let a = &ctx.args;
    let at = ctx.start + Duration::from_secs_f64(rand::random::<f64>() * a.register_secs as f64);
    if at >= ctx.end {
        return;
    }
    tokio::time::sleep_until(at.into()).await;
    ctx.lag(at);
    let phone = &phones[i];
    let measured = ctx.measured(Instant::now());
    let started = Instant::now();
    let outcome = match connect(&ctx, i).await {
        Err(e) => Err(e),
        Ok(mut sender) => {
            let body = json!({
                "device_id": phone.device_id, "display_name": phone.name,
                "group_id": phone.group_id, "platform": "android",
            })
            .to_string();
            let req = request(&ctx, phone, Method::POST, "/api/v1/devices/register", Some(body));
            send(&mut sender, req).await
        }
    };
    ctx.stats.register.record(started, outcome, measured);
}

/// The map open: the group listing every `poll_secs` over a kept-alive connection.
async fn phone_polls(ctx: Arc<Ctx>, phones: Arc<Vec<Phone>>, i: usize, slot: usize) {
    let a = &ctx.args;
    let phone = &phones[i];
    let path = format!("/api/v1/devices?group_id={}", phone.group_id);
    let mut at = ctx.start + Duration::from_secs_f64(rand::random::<f64>() * a.poll_secs as f64);
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    while at < ctx.end {
        tokio::time::sleep_until(at.into()).await;
        ctx.lag(at);
        let measured = ctx.measured(Instant::now());
        let started = Instant::now();
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(&ctx, slot).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    ctx.stats.list.record(started, Err(e), measured);
                    at += Duration::from_secs(a.poll_secs);
                    continue;
                }
            }
        }
        let sender = conn.as_mut().unwrap();
        let outcome = send(sender, request(&ctx, phone, Method::GET, &path, None)).await;
        if outcome.is_err() {
            conn = None;
        }
        ctx.stats.list.record(started, outcome, measured);
        at += Duration::from_secs(a.poll_secs);
    }
}

/// The map open: one live stream, opened during the warm-up and read until the run ends; the
/// events are counted by type.
async fn phone_streams(ctx: Arc<Ctx>, phones: Arc<Vec<Phone>>, i: usize, slot: usize) {
    let phone = &phones[i];
    let ramp = ctx.warmup_end.saturating_duration_since(ctx.start).mul_f64(0.8);
    let at = ctx.start + ramp.mul_f64(rand::random::<f64>());
    tokio::time::sleep_until(at.into()).await;
    let path = format!("/api/v1/groups/{}/stream", phone.group_id);
    let started = Instant::now();
    let mut sender = match connect(&ctx, slot).await {
        Ok(s) => s,
        Err(e) => return ctx.stats.stream_open.record(started, Err(e), true),
    };
    let mut req = request(&ctx, phone, Method::GET, &path, None);
    req.headers_mut().insert("accept", "text/event-stream".parse().unwrap());
    let res = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => return ctx.stats.stream_open.record(started, Err(format!("send: {e}")), true),
    };
    let status = res.status().as_u16();
    if status != 200 {
        return ctx.stats.stream_open.record(started, Ok(status), true);
    }
    let mut body = res.into_body();
    let mut first = true;
    let mut pending: Vec<u8> = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    ctx.stats.streams_open.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::sleep_until(ctx.end.into());
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = &mut deadline => break,
        };
        let Some(Ok(frame)) = frame else {
            ctx.stats.streams_ended.fetch_add(1, Ordering::Relaxed);
            break;
        };
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        // SSE events end with a blank line; only the `event:` line is read here.
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = pending.drain(..end + 2).collect();
            let kind = block
                .split(|b| *b == b'\n')
                .find_map(|l| l.strip_prefix(b"event: "))
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| "comment".into());
            if first && kind == "snapshot" {
                first = false;
                ctx.stats.stream_open.record(started, Ok(200), true);
            }
            if Instant::now() >= ctx.warmup_end {
                *counts.entry(kind).or_default() += 1;
            }
        }
    }
    let mut all = ctx.stats.events.lock().unwrap();
    for (k, v) in counts {
        *all.entry(k).or_default() += v;
    }
}

fn read_phones(path: &str, n: usize) -> Vec<Phone> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let phones: Vec<Phone> = text
        .lines()
        .filter(|l| !l.is_empty())
        .take(n)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert!(f.len() == 4, "{path}: expected 4 tab-separated fields, got {l:?}");
            Phone { device_id: f[0].into(), group_id: f[1].into(), name: f[2].into(), token: f[3].into() }
        })
        .collect();
    assert!(phones.len() == n, "{path} has {} phones, {n} asked for", phones.len());
    phones
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(!args.addr.is_empty(), "--addr is required");
    let phones = Arc::new(read_phones(&args.phones_file, args.phones));
    let start = Instant::now() + Duration::from_millis(200);
    let ctx = Arc::new(Ctx {
        warmup_end: start + Duration::from_secs(args.warmup),
        end: start + Duration::from_secs(args.duration),
        start,
        stats: Stats::default(),
        args,
    });
    let a = &ctx.args;
    let map_open = (phones.len() as f64 * a.map_share).round() as usize;
    let (shard, shards) = a.shard;
    let mut tasks = Vec::with_capacity(phones.len() * 2 / shards + map_open);
    for i in (0..phones.len()).filter(|i| i % shards == shard) {
        tasks.push(tokio::spawn(phone_uploads(ctx.clone(), phones.clone(), i)));
        tasks.push(tokio::spawn(phone_registers(ctx.clone(), phones.clone(), i)));
    }
    // The map-open phones are spread over the groups: every 1/share-th phone. Their ordinal
    // picks the shard and the replica, so both share them evenly.
    let step = if map_open == 0 { usize::MAX } else { phones.len() / map_open };
    let chosen = (0..phones.len()).step_by(step.max(1)).take(map_open).enumerate();
    for (j, i) in chosen.filter(|(j, _)| j % shards == shard) {
        let slot = j / shards;
        match a.map {
            MapMode::Poll => tasks.push(tokio::spawn(phone_polls(ctx.clone(), phones.clone(), i, slot))),
            MapMode::Stream => tasks.push(tokio::spawn(phone_streams(ctx.clone(), phones.clone(), i, slot))),
            MapMode::None => {}
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = ctx.end.duration_since(ctx.warmup_end).as_secs_f64();
    let s = &ctx.stats;
    let mut lag = s.lag_us.lock().unwrap().clone();
    lag.sort_unstable();
    let lag_p99 =
        if lag.is_empty() { 0.0 } else { lag[(lag.len() * 99 / 100).min(lag.len() - 1)] as f64 / 1000.0 };
    let events = s.events.lock().unwrap().clone();
    let out = json!({
        "phones": phones.len(),
        "map": format!("{:?}", a.map).to_lowercase(),
        "map_open": map_open,
        "shard": format!("{shard}/{shards}"),
        "measured_seconds": seconds,
        "upload": s.upload.summary(seconds),
        "list": s.list.summary(seconds),
        "register": s.register.summary(seconds),
        "stream_open": s.stream_open.summary(seconds),
        "streams_open": s.streams_open.load(Ordering::Relaxed),
        "streams_ended_early": s.streams_ended.load(Ordering::Relaxed),
        "events": events,
        "lag_p99_ms": lag_p99,
        "lag_max_ms": lag.last().map(|v| *v as f64 / 1000.0).unwrap_or(0.0),
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
