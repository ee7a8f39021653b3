//! The SIG GATT service tables, written out independently of the simulator's database (shared
//! by tests/simulator.rs and tests/simulator_bluez.rs).

use std::collections::BTreeMap;

use vectorcare_gateway::simulator::scenario::BleProfile;

/// The SIG service tables (Bluetooth SIG service specifications: HRS, BLS, HTS, PLXS, WSS,
/// GLS, CGMS, CTS, DIS), written out independently of the simulator's database: service UUID
/// → (characteristic UUID, properties "r", "w", "n", "i").
pub fn spec_table(profile: BleProfile) -> BTreeMap<u16, BTreeMap<u16, String>> {
    let profile_chars: (u16, &[(u16, &str)]) = match profile {
        BleProfile::HeartRate => (0x180D, &[(0x2A37, "n")]),
        BleProfile::BloodPressure => (0x1810, &[(0x2A35, "i"), (0x2A49, "r")]),
        BleProfile::Thermometer => (0x1809, &[(0x2A1C, "i"), (0x2A1D, "r")]),
        BleProfile::PulseOximeter => (0x1822, &[(0x2A5E, "i"), (0x2A60, "r")]),
        BleProfile::WeightScale => (0x181D, &[(0x2A9D, "i"), (0x2A9E, "r")]),
        BleProfile::Glucose => (
            0x1808,
            &[(0x2A18, "n"), (0x2A34, "n"), (0x2A51, "r"), (0x2A52, "wi")],
        ),
        BleProfile::Cgm => (
            0x181F,
            &[
                (0x2AA7, "n"),
                (0x2AA8, "r"),
                (0x2AA9, "r"),
                (0x2AAA, "rw"),
                (0x2AAB, "r"),
                (0x2A52, "wi"),
                (0x2AAC, "wi"),
            ],
        ),
    };
    let mut table = BTreeMap::new();
    table.insert(
        profile_chars.0,
        profile_chars
            .1
            .iter()
            .map(|(c, p)| (*c, (*p).to_owned()))
            .collect(),
    );
    table.insert(0x1805, BTreeMap::from([(0x2A2B, "rn".to_owned())]));
    table.insert(
        0x180A,
        BTreeMap::from([
            (0x2A29, "r".to_owned()),
            (0x2A24, "r".to_owned()),
            (0x2A25, "r".to_owned()),
        ]),
    );
    table
}
