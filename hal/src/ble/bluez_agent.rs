//! A BlueZ pairing agent (`org.bluez.Agent1`), because btleplug has no pairing API.
//!
//! Devices that refuse notifications on an unencrypted link answer the subscription with an
//! ATT "insufficient authentication/encryption" error; bluetoothd then starts pairing by itself
//! and asks the default agent. Without an agent, pairing fails and the device never sends a
//! value. [`PairingAgent::run`] registers this agent as the default one and answers:
//! - `RequestPasskey` with the passkey configured for that device (rejected when none);
//! - `RequestConfirmation`, `RequestAuthorization`, `AuthorizeService` with yes for the devices
//!   the gateway collects from, no for anything else;
//! - display/cancel/release calls with an empty reply.
//!
//! Capability: `KeyboardOnly` when any passkey is configured, else `NoInputNoOutput` (Just Works).
//! The agent's D-Bus connection is polled inside the `run` future: nothing is spawned.

use std::collections::HashMap;
use std::ffi::CString;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use dbus::channel::{MatchingReceiver, Sender};
use dbus::message::MatchRule;
use dbus::nonblock::{Proxy, SyncConnection};
use dbus::strings::ErrorName;
use dbus::{Message, Path};

use super::{BleAddress, BleError, bluez_error};

/// Object path the agent is exported at (on the gateway's own D-Bus connection).
pub const AGENT_PATH: &str = "/org/vectorcare/agent";
const AGENT_IFACE: &str = "org.bluez.Agent1";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Which devices the agent pairs with, and with what passkey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingPolicy {
    /// Devices the gateway collects from; `None` = any device (accept-any mode).
    pub allowed: Option<Vec<BleAddress>>,
    /// Passkeys for devices that ask for one (0..=999999).
    pub passkeys: HashMap<BleAddress, u32>,
}

impl PairingPolicy {
    fn allows(&self, address: Option<BleAddress>) -> bool {
        match (&self.allowed, address) {
            (None, _) => true,
            (Some(list), Some(a)) => list.contains(&a),
            (Some(_), None) => false,
        }
    }

    fn capability(&self) -> &'static str {
        if self.passkeys.is_empty() {
            "NoInputNoOutput"
        } else {
            "KeyboardOnly"
        }
    }
}

/// `/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF` → AA:BB:CC:DD:EE:FF.
pub fn address_from_device_path(path: &str) -> Option<BleAddress> {
    let name = path.rsplit('/').next()?.strip_prefix("dev_")?;
    name.replace('_', ":").parse().ok()
}

/// What the agent answers to one call: `Ok(None)` empty reply, `Ok(Some(passkey))`, or a
/// rejection.
fn answer(
    policy: &PairingPolicy,
    member: &str,
    device: Option<BleAddress>,
) -> Result<Option<u32>, &'static str> {
    match member {
        "RequestPasskey" => match device.and_then(|d| policy.passkeys.get(&d)) {
            Some(&passkey) if policy.allows(device) => Ok(Some(passkey)),
            _ => Err("no passkey configured for this device"),
        },
        "RequestConfirmation" | "RequestAuthorization" | "AuthorizeService" => {
            if policy.allows(device) {
                Ok(None)
            } else {
                Err("device not configured for collection")
            }
        }
        "RequestPinCode" => Err("legacy PIN pairing is not supported"),
        // DisplayPasskey, DisplayPinCode, Cancel, Release: nothing to decide.
        _ => Ok(None),
    }
}

fn reply(policy: &PairingPolicy, msg: &Message) -> Message {
    let member = msg.member().map(|m| m.to_string()).unwrap_or_default();
    let device = msg
        .get1::<Path>()
        .and_then(|p| address_from_device_path(&p));
    tracing::debug!(%member, ?device, "pairing agent call");
    match answer(policy, &member, device) {
        Ok(Some(passkey)) => msg.method_return().append1(passkey),
        Ok(None) => msg.method_return(),
        Err(why) => {
            tracing::warn!(%member, "pairing request rejected: {why}");
            let name = ErrorName::new("org.bluez.Error.Rejected")
                .expect("invariant: constant D-Bus error name is valid");
            let text = CString::new(why).expect("invariant: constant text has no NUL");
            msg.error(&name, &text)
        }
    }
}

/// The pairing agent. Build with [`PairingAgent::new`], then drive [`PairingAgent::run`].
#[derive(Debug, Clone)]
pub struct PairingAgent {
    policy: PairingPolicy,
}

impl PairingAgent {
    pub fn new(policy: PairingPolicy) -> Self {
        Self { policy }
    }

    /// Registers the agent on the system bus as BlueZ's default agent and serves it until
    /// `shutdown` completes (then unregisters). Fails when BlueZ cannot be reached; the caller
    /// retries later.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), BleError> {
        let (resource, conn) = dbus_tokio::connection::new_system_sync()
            .map_err(|e| BleError::AdapterUnavailable(e.to_string()))?;
        let policy = Arc::new(self.policy);
        let serving = policy.clone();
        let token = conn.start_receive(
            MatchRule::new_method_call()
                .with_path(AGENT_PATH)
                .with_interface(AGENT_IFACE),
            Box::new(move |msg: Message, conn: &SyncConnection| {
                // A failed send means the bus is gone; the resource future reports that.
                let _ = conn.send(reply(&serving, &msg));
                true
            }),
        );
        let registered = async {
            let manager = Proxy::new("org.bluez", "/org/bluez", CALL_TIMEOUT, conn.clone());
            let agent = Path::from(AGENT_PATH);
            manager
                .method_call::<(), _, _, _>(
                    "org.bluez.AgentManager1",
                    "RegisterAgent",
                    (agent.clone(), policy.capability()),
                )
                .await?;
            manager
                .method_call::<(), _, _, _>(
                    "org.bluez.AgentManager1",
                    "RequestDefaultAgent",
                    (agent,),
                )
                .await
        };
        tokio::pin!(resource);
        let result = tokio::select! {
            lost = &mut resource => Err(BleError::AdapterUnavailable(format!("D-Bus connection lost: {lost}"))),
            r = registered => r.map_err(|e| bluez_error(e.name().unwrap_or(""), e.message().unwrap_or(""))),
        };
        if let Err(e) = result {
            conn.stop_receive(token);
            return Err(e);
        }
        tracing::info!(
            capability = policy.capability(),
            "BlueZ pairing agent registered"
        );
        let outcome = tokio::select! {
            lost = &mut resource => Err(BleError::AdapterUnavailable(format!("D-Bus connection lost: {lost}"))),
            () = shutdown => Ok(()),
        };
        if outcome.is_ok() {
            let manager = Proxy::new("org.bluez", "/org/bluez", CALL_TIMEOUT, conn.clone());
            let unregister = manager.method_call::<(), _, _, _>(
                "org.bluez.AgentManager1",
                "UnregisterAgent",
                (Path::from(AGENT_PATH),),
            );
            // The connection must keep being polled while the call is in flight.
            tokio::select! {
                _ = &mut resource => {}
                _ = unregister => {}
            }
        }
        conn.stop_receive(token);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> BleAddress {
        s.parse().expect("valid address")
    }

    #[test]
    fn device_paths_give_addresses() {
        assert_eq!(
            address_from_device_path("/org/bluez/hci0/dev_C0_FF_EE_08_00_02"),
            Some(addr("C0:FF:EE:08:00:02"))
        );
        assert_eq!(address_from_device_path("/org/bluez/hci0"), None);
    }

    #[test]
    fn answers_follow_the_policy() {
        let listed = addr("C0:FF:EE:08:00:02");
        let other = addr("11:22:33:44:55:66");
        let policy = PairingPolicy {
            allowed: Some(vec![listed]),
            passkeys: HashMap::from([(listed, 123_456)]),
        };
        assert_eq!(policy.capability(), "KeyboardOnly");
        assert_eq!(
            answer(&policy, "RequestPasskey", Some(listed)),
            Ok(Some(123_456))
        );
        assert!(answer(&policy, "RequestPasskey", Some(other)).is_err());
        assert_eq!(
            answer(&policy, "RequestConfirmation", Some(listed)),
            Ok(None)
        );
        assert!(answer(&policy, "AuthorizeService", Some(other)).is_err());
        assert!(answer(&policy, "RequestPinCode", Some(listed)).is_err());
        assert_eq!(answer(&policy, "Cancel", None), Ok(None));
        let any = PairingPolicy::default();
        assert_eq!(any.capability(), "NoInputNoOutput");
        assert_eq!(answer(&any, "RequestAuthorization", Some(other)), Ok(None));
        assert!(answer(&any, "RequestPasskey", Some(other)).is_err());
    }
}
