//! Telemetry and the status endpoint, built before the pipeline runs (so a caller can print the
//! endpoint's address, and a port that is taken fails the start) and served as pipeline tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::RuntimeError;
use super::pipeline::ServiceStarter;
use super::shutdown::Shutdown;
use crate::config::Config;
use crate::sources::mqtt::source::HealthSnapshot;
use crate::status::StatusServer;
use crate::telemetry::{Telemetry, TelemetryOptions};

/// How often the queue depth is sampled into the history and the MQTT health message.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Telemetry plus, when `[status]` is enabled, the bound status endpoint.
pub struct Observability {
    pub telemetry: Arc<Telemetry>,
    pub status: Option<StatusServer>,
}

/// Builds telemetry from the configuration and binds the status endpoint.
pub async fn observability(
    config: &Config,
    clock: Arc<dyn vectorcare_hal::clock::Clock>,
) -> Result<Observability, RuntimeError> {
    let options = TelemetryOptions::from_config(
        config,
        config.status.show_readings,
        &config.status.device_labels,
    );
    let telemetry = Arc::new(Telemetry::new(options, clock));
    let status = if config.status.enabled {
        let server = StatusServer::bind(&config.status, telemetry.clone()).await?;
        if let Some(addr) = server.local_addr() {
            tracing::info!(%addr, "status endpoint listening");
        }
        Some(server)
    } else {
        None
    };
    Ok(Observability { telemetry, status })
}

impl Observability {
    /// `http://address:port/` of the status endpoint, when it is enabled.
    pub fn status_url(&self) -> Option<String> {
        let addr = self.status.as_ref()?.local_addr()?;
        Some(format!("http://{addr}/"))
    }

    /// The service tasks (sampler, endpoint) and the health view the MQTT source publishes.
    pub(crate) fn services(
        self,
    ) -> (
        Vec<(String, ServiceStarter)>,
        watch::Receiver<HealthSnapshot>,
    ) {
        let (health_tx, health_rx) = watch::channel(HealthSnapshot::default());
        let telemetry = self.telemetry;
        let mut services: Vec<(String, ServiceStarter)> = vec![(
            "telemetry".into(),
            Box::new(move |shutdown: Shutdown| Box::pin(sample(telemetry, health_tx, shutdown))),
        )];
        if let Some(server) = self.status {
            services.push((
                "status".into(),
                Box::new(move |shutdown: Shutdown| Box::pin(server.run(shutdown.wait()))),
            ));
        }
        (services, health_rx)
    }
}

async fn sample(
    telemetry: Arc<Telemetry>,
    health: watch::Sender<HealthSnapshot>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.requested() => return,
            _ = tick.tick() => {
                health.send_replace(telemetry.sample());
            }
        }
    }
}
