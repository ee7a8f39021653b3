//! The serial source: one session loop per configured port, all driven from one future.
//!
//! Per port: locate + open (hal) → read bytes → frame lines (resynchronising after garbage) →
//! decode with the port's line format → hand readings to the sink. An unplug (read error or end
//! of stream) closes the session; the loop reopens the port with backoff until it returns.
//! A serial device cannot resend, so a temporary ingest refusal (queue full) is retried with
//! backoff while the kernel buffers the following lines. The per-port state and counters are
//! published on a `watch` channel for the status view.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Instant;
use vectorcare_hal::clock::Clock;
use vectorcare_hal::serial::SerialOpener;

use super::config::{PortConfig, SerialConfig};
use crate::decode::mqtt::PayloadContext;
use crate::decode::serial::framing::{Frame, LineFramer};
use crate::reading::{ClockContext, DeviceIdentity, Kind, Reading, SourceKind};
use crate::sources::backoff::Backoff;
use crate::sources::{IngestError, ReadingSink};

/// Connection state of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    Connecting,
    Connected,
    /// Not present or failed to open/read; the text says why (no values).
    Disconnected(String),
    Stopped,
}

/// What the status view shows for one port. Counters only grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortStatus {
    pub label: String,
    pub state: PortState,
    /// Successful opens (1 after the first connect; +1 per replug).
    pub connects: u64,
    pub lines: u64,
    /// Frames dropped as garbage (over-long or not text) — each followed by a resync.
    pub garbage_frames: u64,
    /// Lines that did not decode with the port's format.
    pub bad_lines: u64,
    pub readings_stored: u64,
    pub readings_rejected: u64,
    /// Readings skipped by `min_interval_seconds`.
    pub readings_throttled: u64,
}

pub type SerialStatus = Vec<PortStatus>;

pub struct SerialSource {
    config: SerialConfig,
    opener: Arc<dyn SerialOpener>,
    clock: Arc<dyn Clock>,
    status: watch::Sender<SerialStatus>,
}

impl std::fmt::Debug for SerialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialSource")
            .field("ports", &self.config.ports.len())
            .finish()
    }
}

impl SerialSource {
    pub fn new(config: SerialConfig, opener: Arc<dyn SerialOpener>, clock: Arc<dyn Clock>) -> Self {
        let initial = config
            .ports
            .iter()
            .map(|p| PortStatus {
                label: p.label.clone(),
                state: PortState::Connecting,
                connects: 0,
                lines: 0,
                garbage_frames: 0,
                bad_lines: 0,
                readings_stored: 0,
                readings_rejected: 0,
                readings_throttled: 0,
            })
            .collect();
        let (status, _) = watch::channel(initial);
        Self {
            config,
            opener,
            clock,
            status,
        }
    }

    /// Live per-port status (the order of `config.ports`).
    pub fn status(&self) -> watch::Receiver<SerialStatus> {
        self.status.subscribe()
    }

    /// Runs every port until `shutdown` completes.
    pub async fn run(self, sink: ReadingSink, shutdown: impl Future<Output = ()>) {
        let sessions = self.config.ports.iter().enumerate().map(|(i, port)| {
            PortSession {
                index: i,
                port,
                source: &self,
                sink: sink.clone(),
                last_emitted: HashMap::new(),
            }
            .run()
        });
        tokio::select! {
            _ = futures::future::join_all(sessions) => {}
            _ = shutdown => {}
        }
        self.status
            .send_modify(|s| s.iter_mut().for_each(|p| p.state = PortState::Stopped));
    }
}

struct PortSession<'a> {
    index: usize,
    port: &'a PortConfig,
    source: &'a SerialSource,
    sink: ReadingSink,
    last_emitted: HashMap<Kind, Instant>,
}

/// Why a session ended.
enum End {
    Unplugged(String),
    ShuttingDown,
}

impl PortSession<'_> {
    fn update(&self, f: impl FnOnce(&mut PortStatus)) {
        self.source.status.send_modify(|s| {
            if let Some(p) = s.get_mut(self.index) {
                f(p);
            }
        });
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(
            self.source.config.reconnect_initial,
            self.source.config.reconnect_max,
        );
        loop {
            self.update(|p| p.state = PortState::Connecting);
            match self
                .source
                .opener
                .open(&self.port.locator, &self.port.settings)
            {
                Ok((path, stream)) => {
                    tracing::info!(port = %self.port.label, "serial port connected");
                    tracing::debug!(port = %self.port.label, path = %path.display(), "serial port opened");
                    self.update(|p| {
                        p.state = PortState::Connected;
                        p.connects += 1;
                    });
                    backoff.reset();
                    match self.session(stream).await {
                        End::ShuttingDown => return,
                        End::Unplugged(why) => {
                            tracing::warn!(port = %self.port.label, "serial port lost, reconnecting");
                            tracing::debug!(port = %self.port.label, reason = %why, "serial port lost");
                            self.update(|p| p.state = PortState::Disconnected(why));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(port = %self.port.label, error = %e, "serial port not available");
                    self.update(|p| p.state = PortState::Disconnected(e.to_string()));
                }
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    async fn session(&mut self, mut stream: Box<dyn vectorcare_hal::serial::SerialStream>) -> End {
        let mut framer = LineFramer::new(self.port.max_line_bytes);
        let mut buf = vec![0u8; 1024];
        let mut frames = Vec::new();
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) => return End::Unplugged("end of stream".to_owned()),
                Ok(n) => n,
                Err(e) => return End::Unplugged(e.to_string()),
            };
            framer.push(&buf[..n], &mut frames);
            for frame in std::mem::take(&mut frames) {
                if let Some(End::ShuttingDown) = self.handle(frame).await {
                    return End::ShuttingDown;
                }
            }
        }
    }

    async fn handle(&mut self, frame: Frame) -> Option<End> {
        let line = match frame {
            Frame::Line(line) => line,
            Frame::NotText | Frame::Overlong => {
                self.update(|p| p.garbage_frames += 1);
                return None;
            }
        };
        self.update(|p| p.lines += 1);
        let ctx = self.context();
        let readings = match self.port.format.decode_line(&line, &ctx) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(port = %self.port.label, error = %e, "serial line refused");
                self.update(|p| p.bad_lines += 1);
                return None;
            }
        };
        let readings = self.throttle(readings);
        if readings.is_empty() {
            return None;
        }
        let count = readings.len() as u64;
        let mut backoff = Backoff::new(
            self.source.config.reconnect_initial,
            self.source.config.reconnect_max,
        );
        loop {
            match self.sink.submit(readings.clone()).await {
                Ok(()) => {
                    self.update(|p| p.readings_stored += count);
                    return None;
                }
                Err(IngestError::ShuttingDown) => return Some(End::ShuttingDown),
                Err(e) if e.is_permanent() => {
                    tracing::warn!(port = %self.port.label, "serial readings rejected by the pipeline");
                    tracing::debug!(port = %self.port.label, error = %e, "serial readings rejected");
                    self.update(|p| p.readings_rejected += count);
                    return None;
                }
                Err(e) => {
                    tracing::debug!(port = %self.port.label, error = %e, "queue refused serial readings, retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Keeps at most one reading per kind per `min_interval` (1 Hz monitors would otherwise
    /// fill the queue with 86 400 observations a day).
    fn throttle(&mut self, readings: Vec<Reading>) -> Vec<Reading> {
        if self.port.min_interval.is_zero() {
            return readings;
        }
        let now = Instant::now();
        let before = readings.len();
        let kept: Vec<Reading> = readings
            .into_iter()
            .filter(|r| match self.last_emitted.get(&r.kind) {
                Some(last) if now.duration_since(*last) < self.port.min_interval => false,
                _ => {
                    self.last_emitted.insert(r.kind, now);
                    true
                }
            })
            .collect();
        let skipped = (before - kept.len()) as u64;
        if skipped > 0 {
            self.update(|p| p.readings_throttled += skipped);
        }
        kept
    }

    fn context(&self) -> PayloadContext {
        let now = self.source.clock.now();
        PayloadContext {
            device: DeviceIdentity {
                source: SourceKind::Serial,
                address: self.port.device_id.clone(),
                system_id: None,
                manufacturer: self.port.manufacturer.clone(),
                model: self.port.model.clone(),
                serial_number: None,
            },
            received_at: to_offset_date_time(now),
            clock: ClockContext {
                device_offset_seconds: None,
                gateway_clock_synchronized: self.source.clock.sync_state().is_synchronized(),
            },
        }
    }
}

pub(crate) fn to_offset_date_time(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}
