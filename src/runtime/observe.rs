//! Telemetry and the status endpoint, built before the pipeline runs (so a caller can print the
//! endpoint's address) and served as pipeline tasks.

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
        match StatusServer::bind(&config.status, telemetry.clone()).await {
            Ok(server) => {
                if let Some(addr) = server.local_addr() {
                    tracing::info!(%addr, "status endpoint listening");
                }
                Some(server)
            }
            // Readings matter more than the page: a taken port (another program, a second
            // gateway) does not stop the pipeline. A bad token file is a configuration error
            // like any other and does stop the start (exit 78).
            Err(err @ crate::status::StatusError::Bind { .. }) => {
                tracing::error!(error = %err, "status endpoint not started; the gateway runs without it");
                None
            }
            Err(err) => return Err(err.into()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_config(listen: &str, token_file: Option<&std::path::Path>) -> Config {
        let mut env = vec![
            (
                "VECTORCARE_GATEWAY__STATE_DIR".to_owned(),
                "/tmp/unused".to_owned(),
            ),
            ("VECTORCARE_STATUS__LISTEN".to_owned(), listen.to_owned()),
        ];
        if let Some(file) = token_file {
            env.push((
                "VECTORCARE_STATUS__TOKEN_FILE".to_owned(),
                file.display().to_string(),
            ));
        }
        crate::config::load_str(
            include_str!("../../config/demo.toml"),
            std::path::Path::new("config/demo.toml"),
            env,
        )
        .expect("demo config")
    }

    #[tokio::test]
    async fn a_taken_port_leaves_the_gateway_running_without_the_endpoint() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let clock = Arc::new(vectorcare_hal::clock::AssumedSynchronizedClock);
        let observability = observability(&demo_config(&addr, None), clock.clone())
            .await
            .expect("runs without the endpoint");
        assert!(observability.status.is_none());
        assert_eq!(observability.status_url(), None);
        let (services, _) = observability.services();
        let names: Vec<_> = services.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["telemetry"]);

        let free = observability_with_port_zero(clock).await;
        assert!(free.starts_with("http://127.0.0.1:"), "{free}");
    }

    async fn observability_with_port_zero(clock: Arc<dyn vectorcare_hal::clock::Clock>) -> String {
        let observed = observability(&demo_config("127.0.0.1:0", None), clock)
            .await
            .expect("bound");
        observed.status_url().expect("url")
    }

    #[tokio::test]
    async fn a_missing_token_file_stops_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-such-token");
        let clock = Arc::new(vectorcare_hal::clock::AssumedSynchronizedClock);
        let err = observability(&demo_config("127.0.0.1:0", Some(&missing)), clock)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, RuntimeError::Status(_)), "{err}");
    }
}
