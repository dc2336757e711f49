use headroom::config::{ConfigError, Settings};

fn err(overlay: &str) -> String {
    match Settings::from_toml(overlay) {
        Ok(_) => panic!("accepted: {overlay}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_are_valid() {
    let s = Settings::from_toml("").expect("the built-in defaults must validate");
    assert_eq!(s.sources.len(), 1);
    assert_eq!(s.sources[0].name, "demo");
}

#[test]
fn an_unknown_key_is_reported_by_name() {
    let e = err("[scrape]\nintervall_secs = 5\n");
    assert!(e.contains("intervall_secs"), "{e}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key() {
    let e = err("[scrape]\ninterval_secs = \"often\"\n");
    assert!(e.contains("interval_secs"), "{e}");
}

#[test]
fn an_out_of_range_value_names_its_key() {
    let e = err("[assess]\nforecast_level = 1.5\n");
    assert!(e.contains("assess.forecast_level"), "{e}");
    let e = err("[scrape]\nmax_points_per_query = 20000\n");
    assert!(e.contains("scrape.max_points_per_query"), "{e}");
    let e = err("[server]\nlisten_addr = \"not an address\"\n");
    assert!(e.contains("server.listen_addr"), "{e}");
}

#[test]
fn duplicate_source_names_are_rejected() {
    let e = err(
        "[[sources]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\n[[sources]]\nname = \"a\"\nurl = \"http://127.0.0.1:2\"\n",
    );
    assert!(e.contains("sources[1].name"), "{e}");
}

#[test]
fn a_secret_from_a_missing_variable_names_key_and_variable() {
    let e = err(
        "[[sources]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nbearer_token = \"env:HEADROOM_IT_UNSET_TOKEN\"\n",
    );
    assert!(e.contains("sources[0].bearer_token"), "{e}");
    assert!(e.contains("HEADROOM_IT_UNSET_TOKEN"), "{e}");
}

#[test]
fn a_secret_read_from_a_file_is_redacted_in_debug_output() {
    let dir = std::env::temp_dir().join(format!("headroom-it-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, "s3cr3t-value\n").unwrap();
    let s = Settings::from_toml(&format!(
        "[[sources]]\nname = \"a\"\nurl = \"https://prom.example:9090\"\nbearer_token = \"file:{}\"\n",
        path.display()
    ))
    .unwrap();
    let token = s.sources[0].bearer_token.as_ref().unwrap();
    let resolved = token.resolve("t").unwrap().unwrap();
    assert_eq!(resolved.expose(), "s3cr3t-value");
    assert!(!format!("{s:?}").contains("s3cr3t"));
    assert!(!format!("{resolved:?}").contains("s3cr3t"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn config_error_variants_name_the_key() {
    let e = ConfigError::Invalid {
        key: "a.b".into(),
        reason: "bad".into(),
    };
    assert_eq!(e.to_string(), "configuration key `a.b`: bad");
}

#[test]
fn a_policy_rule_naming_an_unknown_policy_names_its_key() {
    let e = err("[assess]\npolicy_rules = [{ match = \"payments\", policy = \"reckless\" }]\n");
    assert!(e.contains("assess.policy_rules[0].policy"), "{e}");
}
