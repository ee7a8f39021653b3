use super::*;

fn load_text(text: &str) -> Result<Config, ConfigError> {
    load_str(text, Path::new("test.toml"), Vec::<(String, String)>::new())
}

fn problem_paths(err: ConfigError) -> Vec<String> {
    match err {
        ConfigError::Invalid(problems) => problems.iter().map(|p| p.path.clone()).collect(),
        other => panic!("expected validation problems, got {other}"),
    }
}

const MINIMAL: &str = r#"
[gateway]
id = "hub-0001"
patient = "Patient/123"
"#;

#[test]
fn minimal_config_takes_embedded_defaults() {
    let config = load_text(MINIMAL).expect("valid");
    assert_eq!(config.gateway.id, "hub-0001");
    assert_eq!(
        config.gateway.state_dir,
        PathBuf::from("/var/lib/vectorcare-gateway")
    );
    assert_eq!(config.log.level, "info");
    assert_eq!(config.log.format, LogFormat::Auto);
    assert!(!config.clock.assume_synchronized);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = r#"
[gateway]
id = "hub 0001"
patient = 123
colour = "blue"

[log]
format = "fancy"

[nonsense]
x = 1
"#;
    let mut paths = problem_paths(load_text(text).expect_err("invalid"));
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "gateway.colour",
            "gateway.id",
            "gateway.patient",
            "log.format",
            "nonsense"
        ]
    );
}

#[test]
fn problems_carry_messages_and_hints() {
    let err = load_text("[gateway]\nid = \"hub-1\"\npatient = \"Person/1\"").expect_err("invalid");
    let lines = err.lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("gateway.patient: not a FHIR Patient reference"),
        "{lines:?}"
    );
    assert!(lines[0].contains("hint: write Patient/<id>"), "{lines:?}");
}

#[test]
fn environment_overrides_the_file() {
    let config = load_str(
        MINIMAL,
        Path::new("test.toml"),
        vec![
            (
                "VECTORCARE_GATEWAY__PATIENT".to_owned(),
                "Patient/env-9".to_owned(),
            ),
            ("VECTORCARE_LOG__LEVEL".to_owned(), "debug".to_owned()),
        ],
    )
    .expect("valid");
    assert_eq!(config.gateway.patient, "Patient/env-9");
    assert_eq!(config.log.level, "debug");
}

#[test]
fn bad_environment_values_are_problems_too() {
    let err = load_str(
        MINIMAL,
        Path::new("test.toml"),
        vec![(
            "VECTORCARE_CLOCK__ASSUME_SYNCHRONIZED".to_owned(),
            "maybe".to_owned(),
        )],
    )
    .expect_err("invalid");
    assert_eq!(problem_paths(err), vec!["clock.assume_synchronized"]);
}

#[test]
fn syntax_errors_name_the_file() {
    let err = load_text("[gateway\nid=").expect_err("invalid");
    assert!(matches!(err, ConfigError::Syntax { .. }));
    assert!(
        err.to_string().starts_with("test.toml is not valid TOML"),
        "{err}"
    );
}
