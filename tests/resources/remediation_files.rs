//! remediation.yaml and shipyard.yaml as Keptn, its integrations and the tutorial wrote them
//! (copies under tests/vectors/), this repository's own files, and broken input.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use unleash_remediation_service::resources::{
    Format, MatchKind, RemediationFile, SelectError, Shipyard, ShipyardFormat,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn remediation(rel: &str) -> RemediationFile {
    RemediationFile::parse(&read(rel), rel).unwrap_or_else(|e| panic!("{e}"))
}

fn shipyard(rel: &str) -> Shipyard {
    Shipyard::parse(&read(rel), rel).unwrap_or_else(|e| panic!("{e}"))
}

/// Every .yaml file under `dir`, relative to the repository root, sorted.
fn yaml_files(dir: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join(dir), &mut out);
    let mut rel: Vec<String> = out
        .iter()
        .map(|p| {
            p.strip_prefix(root())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rel.sort();
    rel
}

fn is_shipyard(rel: &str) -> bool {
    rel.contains("shipyard")
}

// ---------------------------------------------------------------------------------------------
// The vectors, as their producers meant them

#[test]
fn every_vector_file_parses() {
    let files = yaml_files("tests/vectors");
    assert_eq!(files.len(), 11, "{files:?}");
    for rel in files {
        if is_shipyard(&rel) {
            shipyard(&rel);
        } else {
            remediation(&rel);
        }
    }
}

#[test]
fn tutorial_failure_rate_increase_toggles_static_content() {
    let file = remediation("tests/vectors/tutorial/remediations.yaml");
    assert_eq!(file.format(), Format::Keptn06);
    let action = file.action(Some("Failure rate increase"), None, 0).unwrap();
    assert_eq!(action.action, "featuretoggle");
    assert_eq!(action.value, json!("EnableStaticContent:on"));
}

#[test]
fn keptn_07_example_is_the_06_format_with_text_values() {
    let file = remediation("tests/vectors/keptn-0.7/remediation.yaml");
    assert_eq!(file.format(), Format::Keptn06);
    let action = file
        .action(Some("cpu_usage_sockshop_carts"), None, 0)
        .unwrap();
    assert_eq!(action.action, "scaling");
    // Keptn 0.6 read the value as text: `+1` is not the number 1.
    assert_eq!(action.value, json!("+1"));
}

#[test]
fn keptn_08_remediation_has_two_actions_in_order() {
    let file = remediation("tests/vectors/keptn-0.8/remediation.yaml");
    assert_eq!(file.format(), Format::Spec014);
    let title = Some("Response time degradation");
    let first = file.action(title, None, 0).unwrap();
    assert_eq!(first.action, "toggle-feature");
    assert_eq!(first.name, "toggle-feature");
    assert_eq!(
        first.description,
        "Toggle feature flag EnablePromotion to OFF"
    );
    assert_eq!(first.value, json!({"EnablePromotion": "off"}));
    let second = file.action(title, None, 1).unwrap();
    assert_eq!(second.action, "run-snow-wf");
    assert_eq!(second.value, json!({"hook": "https://myremediationlink"}));
    assert!(matches!(
        file.action(title, None, 2),
        Err(SelectError::NoActionAtIndex { index: 2, .. })
    ));
}

#[test]
fn unleash_service_example_toggles_promotion_off() {
    let file = remediation("tests/vectors/unleash-service/remediation.yaml");
    let action = file.action(Some("Failure rate increase"), None, 0).unwrap();
    assert_eq!(action.name, "Toogle feature flag");
    assert_eq!(action.action, "toggle-feature");
    assert_eq!(action.value, json!({"EnablePromotion": "off"}));
}

#[test]
fn prometheus_rollback_has_no_value() {
    let file = remediation("tests/vectors/prometheus-service/podtatohead.remediation.yaml");
    let action = file.action(None, Some("response_time_p90"), 0).unwrap();
    assert_eq!(action.name, "Rollback");
    assert_eq!(action.action, "rollback");
    assert_eq!(action.value, Value::Null);
}

// ---------------------------------------------------------------------------------------------
// Keptn 1.4.5's own cases (remediation-service/handler/get_action_event_handler_test.go)

const WITH_DEFAULT: &str = "tests/vectors/keptn-1.x/remediation.yaml";
const WITHOUT_DEFAULT: &str = "tests/vectors/keptn-1.x/remediation-without-default.yaml";

#[test]
fn root_cause_selects_its_problem_type() {
    for rel in [WITH_DEFAULT, WITHOUT_DEFAULT] {
        let file = remediation(rel);
        let action = file.action(None, Some("problemType1"), 0).unwrap();
        assert_eq!(action.name, "actionName1", "{rel}");
        assert_eq!(
            file.find(None, Some("problemType1")).unwrap().1,
            MatchKind::RootCause
        );
    }
}

#[test]
fn title_selects_its_problem_type() {
    let file = remediation(WITH_DEFAULT);
    let action = file.action(Some("problemType1"), None, 0).unwrap();
    assert_eq!(action.name, "actionName1");
    assert_eq!(action.action, "action1");
    assert_eq!(action.description, "actionDescription1");
    assert_eq!(action.value, json!({"foo": "bar"}));
}

#[test]
fn root_cause_wins_over_title() {
    let file = remediation(WITH_DEFAULT);
    let action = file
        .action(Some("problemType1"), Some("problemType2"), 0)
        .unwrap();
    assert_eq!(action.name, "actionName11");
}

#[test]
fn no_title_and_no_root_cause_give_the_default() {
    let file = remediation(WITH_DEFAULT);
    let action = file.action(None, None, 0).unwrap();
    assert_eq!(action.name, "escalateDefaultName");
    let (_, how) = file.find(Some(""), Some("")).unwrap();
    assert_eq!(how, MatchKind::Default);
}

#[test]
fn without_a_default_nothing_matches() {
    let file = remediation(WITHOUT_DEFAULT);
    let err = file.action(None, None, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find action for problem type default"
    );
    let err = file.action(Some("Other problem"), None, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find action for problem title Other problem"
    );
    let err = file
        .action(Some("Other problem"), Some("other cause"), 0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find action for root cause other cause"
    );
}

#[test]
fn index_beyond_the_default_actions_is_an_error() {
    let file = remediation(WITH_DEFAULT);
    let err = file.action(None, None, 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "there is no action with index 2 for problem type default"
    );
}

// ---------------------------------------------------------------------------------------------
// Matching beyond Keptn 1.x: title prefixes (Keptn 0.6/0.7)

#[test]
fn a_longer_title_matches_by_prefix() {
    let file = remediation("tests/vectors/tutorial/remediations.yaml");
    let title = Some("Failure rate increase on service X");
    let (matched, how) = file.find(title, None).unwrap();
    assert_eq!(matched.problem_type, "Failure rate increase");
    assert_eq!(how, MatchKind::TitlePrefix);
    assert_eq!(
        file.action(title, None, 0).unwrap().value,
        json!("EnableStaticContent:on")
    );
}

#[test]
fn the_longest_prefix_wins() {
    let file = remediation("tests/fixtures/remediation/keptn06-with-close.yaml");
    let (matched, _) = file
        .find(Some("Failure rate increase on Web request /cart"), None)
        .unwrap();
    assert_eq!(matched.problem_type, "Failure rate increase");
    let (matched, _) = file.find(Some("Failure rate spike"), None).unwrap();
    assert_eq!(matched.problem_type, "Failure rate");
}

#[test]
fn exact_title_beats_prefix_and_prefix_beats_default() {
    let text = r#"
apiVersion: spec.keptn.sh/0.1.4
kind: Remediation
spec:
  remediations:
    - problemType: default
      actionsOnOpen: [{action: d}]
    - problemType: Failure
      actionsOnOpen: [{action: p}]
    - problemType: Failure rate increase
      actionsOnOpen: [{action: e}]
"#;
    let file = RemediationFile::parse(text, "inline").unwrap();
    let pick = |t: &str| file.action(Some(t), None, 0).unwrap().action.clone();
    assert_eq!(pick("Failure rate increase"), "e");
    assert_eq!(pick("Failure rate increase on X"), "e");
    assert_eq!(pick("Failure of disk"), "p");
    assert_eq!(pick("Memory leak"), "d");
    // `default` is a fallback, not a prefix.
    assert_eq!(
        file.find(Some("defaults exhausted"), None).unwrap().1,
        MatchKind::Default
    );
}

#[test]
fn close_actions_belong_to_the_matched_remediation() {
    let file = remediation("tests/fixtures/remediation/keptn06-with-close.yaml");
    let close = file.actions_on_close(Some("Failure rate increase"), None);
    assert_eq!(close.len(), 1);
    assert_eq!(close[0].value, json!("EnableStaticContent:off"));
    assert!(file.actions_on_close(Some("Failure rate"), None).is_empty());
    assert!(file.actions_on_close(Some("Unknown"), None).is_empty());
}

// ---------------------------------------------------------------------------------------------
// YAML 1.1 booleans

#[test]
fn unquoted_off_means_off() {
    let file = remediation("tests/fixtures/remediation/yaml11-booleans.yaml");
    let title = Some("Response time degradation");
    assert_eq!(
        file.action(title, None, 0).unwrap().value,
        json!({"EnablePromotion": "off"})
    );
    assert_eq!(
        file.action(title, None, 1).unwrap().value,
        json!({
            "EnableStaticContent": "on",
            "EnableItemCache": "on",
            "EnableRecommendations": "off",
            "EnableSearch": "on",
            "EnableBanner": "off"
        })
    );
}

#[test]
fn values_of_other_actions_keep_yaml_11_meaning() {
    let file = remediation("tests/fixtures/remediation/yaml11-booleans.yaml");
    let action = file.action(Some("Failure rate increase"), None, 0).unwrap();
    assert_eq!(action.value, json!({"dryRun": false}));
    // No name written: the action names the step.
    assert_eq!(action.name, "scale");
}

// ---------------------------------------------------------------------------------------------
// This repository's files

#[test]
fn repository_remediation_serves_the_tutorial() {
    let file = remediation("remediation.yaml");
    let title = Some("Failure rate increase");
    let action = file.action(title, None, 0).unwrap();
    assert_eq!(action.action, "toggle-feature");
    assert_eq!(action.value, json!({"EnableStaticContent": "on"}));
    let close = file.actions_on_close(title, None);
    assert_eq!(close.len(), 1);
    assert_eq!(close[0].value, json!({"EnableStaticContent": "off"}));

    let (matched, how) = file.find(Some("Memory saturation"), None).unwrap();
    assert_eq!(
        (matched.problem_type.as_str(), how),
        ("default", MatchKind::Default)
    );
    assert_eq!(
        file.action(Some("Memory saturation"), None, 1)
            .unwrap()
            .action,
        "escalate"
    );
}

#[test]
fn repository_shipyard_remediates_production() {
    let s = shipyard("shipyard.yaml");
    assert_eq!(
        s.format(),
        &ShipyardFormat::V02("spec.keptn.sh/0.2.2".into())
    );
    assert!(s.remediation_enabled("production"));
    assert!(!s.remediation_enabled("dev"));
}

// ---------------------------------------------------------------------------------------------
// Shipyards

#[test]
fn shipyard_01_needs_automated_remediation_strategy() {
    let s = shipyard("tests/vectors/tutorial/shipyard.yaml");
    assert_eq!(s.format(), &ShipyardFormat::V01);
    assert!(s.remediation_enabled("production"));
    assert!(!s.remediation_enabled("staging"));

    let manual = Shipyard::parse(
        "stages:\n  - name: dev\n    deployment_strategy: direct\n  - name: production\n    remediation_strategy: manual\n",
        "inline",
    )
    .unwrap();
    assert!(!manual.remediation_enabled("dev"));
    assert!(!manual.remediation_enabled("production"));
}

#[test]
fn shipyard_02_needs_a_remediation_sequence() {
    for rel in [
        "tests/vectors/keptn-0.8/shipyard-0.8.0.yaml",
        "tests/vectors/keptn-0.8/shipyard-0.8.3.yaml",
    ] {
        let s = shipyard(rel);
        assert!(matches!(s.format(), ShipyardFormat::V02(_)), "{rel}");
        assert!(s.remediation_enabled("production"), "{rel}");
        assert!(!s.remediation_enabled("dev"), "{rel}");
    }
    let s = shipyard("tests/vectors/unleash-service/shipyard.yaml");
    assert!(s.remediation_enabled("production"));
}

#[test]
fn shipyard_accepts_every_02_version() {
    for v in ["0.2.0", "0.2.3", "0.2.10"] {
        let text = format!(
            "apiVersion: spec.keptn.sh/{v}\nkind: Shipyard\nspec:\n  stages:\n    - name: production\n      sequences:\n        - name: remediation\n"
        );
        assert!(
            Shipyard::parse(&text, "inline")
                .unwrap()
                .remediation_enabled("production")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Broken files: an error naming file, line and column, never a panic

fn remediation_error(rel: &str) -> unleash_remediation_service::resources::FileError {
    match RemediationFile::parse(&read(rel), rel) {
        Ok(_) => panic!("{rel} should not parse"),
        Err(e) => e,
    }
}

#[test]
fn wrong_api_version_is_pointed_at() {
    let e = remediation_error("tests/fixtures/invalid/wrong-api-version.yaml");
    assert_eq!((e.line, e.column), (1, 13), "{e}");
    assert!(e.message.contains("spec.keptn.sh/0.2.0"), "{e}");
    assert!(e.message.contains("spec.keptn.sh/0.1.4"), "{e}");
    assert!(
        e.to_string()
            .starts_with("tests/fixtures/invalid/wrong-api-version.yaml:1:13: "),
        "{e}"
    );
}

#[test]
fn wrong_kind_is_pointed_at() {
    let e = remediation_error("tests/fixtures/invalid/wrong-kind.yaml");
    assert_eq!((e.line, e.column), (2, 7), "{e}");
    assert!(e.message.contains("kind: Remediation"), "{e}");
}

#[test]
fn missing_spec_is_reported() {
    let e = remediation_error("tests/fixtures/invalid/missing-spec.yaml");
    assert_eq!(e.line, 1, "{e}");
    assert!(e.message.contains("`spec` is missing"), "{e}");
}

#[test]
fn missing_remediations_points_at_spec() {
    let e = remediation_error("tests/fixtures/invalid/missing-remediations.yaml");
    assert_eq!((e.line, e.column), (4, 3), "{e}");
    assert!(e.message.contains("no `remediations` list"), "{e}");
}

#[test]
fn action_without_action_is_pointed_at() {
    let e = remediation_error("tests/fixtures/invalid/action-without-action.yaml");
    assert_eq!((e.line, e.column), (7, 11), "{e}");
    assert!(e.message.contains("has no `action`"), "{e}");
    assert!(e.message.contains("Failure rate increase"), "{e}");
}

#[test]
fn wrong_types_say_what_was_expected() {
    let e = remediation_error("tests/fixtures/invalid/remediations-not-a-list.yaml");
    assert_eq!((e.line, e.column), (4, 17), "{e}");
    assert!(e.message.contains("`remediations` should be a list"), "{e}");

    let e = remediation_error("tests/fixtures/invalid/problem-type-is-a-list.yaml");
    assert_eq!((e.line, e.column), (5, 20), "{e}");
    assert!(e.message.contains("`problemType` should be text"), "{e}");
}

#[test]
fn text_that_is_not_yaml_is_reported_with_its_place() {
    let e = remediation_error("tests/fixtures/invalid/not-yaml.yaml");
    assert!(e.line >= 2, "{e}");
    assert!(e.column >= 1, "{e}");
}

#[test]
fn odd_inputs_are_errors_with_a_place() {
    for (text, words) in [
        ("", "empty"),
        ("   \n# only a comment\n", "empty"),
        ("just text", "mapping"),
        ("- a\n- b\n", "mapping"),
        ("a: b\n\tc: d\n", "tab"),
        (
            "apiVersion: spec.keptn.sh/0.1.4\napiVersion: x\n",
            "duplicate",
        ),
        (
            "kind: Remediation\nspec:\n  remediations:\n    - problemType: x\n",
            "actionsOnOpen",
        ),
        (
            "kind: Remediation\nspec:\n  remediations:\n    - actionsOnOpen: []\n",
            "problemType",
        ),
        (
            "kind: Remediation\nspec:\n  remediations:\n    - problemType: \"\"\n      actionsOnOpen: []\n",
            "empty",
        ),
        ("remediations:\n  - name: x\n", "actions"),
        (
            "remediations:\n  - name: x\n    actions:\n      - value: a:on\n",
            "`action`",
        ),
        (
            "remediations:\n  - name: x\n    actions:\n      - action: t\n        value: {a: b}\n",
            "text",
        ),
        ("remediations: []\nspec:\n  remediations: []\n", "0.6"),
        ("stages:\n  - name: production\n", "not a remediation file"),
        (
            "kind: Remediation\nspec:\n  remediations:\n    - problemType: x\n      actionsOnOpen: []\n    - problemType: x\n      actionsOnOpen: []\n",
            "already listed on line 4",
        ),
        ("a: &a [*a]\n", ""),
        ("\u{0}\u{1}\u{2}", ""),
    ] {
        let e = RemediationFile::parse(text, "inline.yaml").expect_err(text);
        assert!(e.line >= 1 && e.column >= 1, "{text:?}: {e}");
        assert!(e.message.contains(words), "{text:?}: {e}");
        assert!(e.to_string().starts_with("inline.yaml:"), "{e}");
    }
}

#[test]
fn oversized_files_are_refused() {
    let mut text = String::from("remediations:\n");
    while text.len() <= 1024 * 1024 {
        text.push_str("  - name: x\n    actions: [{action: a}]\n");
    }
    let e = RemediationFile::parse(&text, "big.yaml").unwrap_err();
    assert!(e.message.contains("bytes"), "{e}");
}

#[test]
fn broken_shipyards_are_pointed_at() {
    let rel = "tests/fixtures/invalid/shipyard-wrong-api-version.yaml";
    let e = Shipyard::parse(&read(rel), rel).unwrap_err();
    assert_eq!((e.line, e.column), (1, 13), "{e}");
    assert!(e.message.contains("spec.keptn.sh/0.2.x"), "{e}");

    let rel = "tests/fixtures/invalid/shipyard-sequences-not-a-list.yaml";
    let e = Shipyard::parse(&read(rel), rel).unwrap_err();
    assert_eq!((e.line, e.column), (6, 18), "{e}");
    assert!(e.message.contains("`sequences` should be a list"), "{e}");

    for (text, words) in [
        ("", "empty"),
        ("kind: Shipyard\n", "`spec` is missing"),
        ("kind: Remediation\nspec: {stages: []}\n", "kind: Shipyard"),
        (
            "apiVersion: spec.keptn.sh/0.2.2\nspec:\n  stages:\n    - sequences: []\n",
            "no `name`",
        ),
        ("stages:\n  - name: a\n  - name: a\n", "already listed"),
        ("stages: production\n", "`stages` should be a list"),
        ("remediations: []\n", "not a shipyard"),
        (
            "apiVersion: spec.keptn.sh/0.2.2\nspec:\n  stages:\n    - name: p\n      sequences:\n        - name: r\n          tasks:\n            - properties: {}\n",
            "task",
        ),
    ] {
        let e = Shipyard::parse(text, "shipyard.yaml").expect_err(text);
        assert!(e.line >= 1 && e.column >= 1, "{text:?}: {e}");
        assert!(e.message.contains(words), "{text:?}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = RemediationFile::parse(&text, "p.yaml") {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
        if let Err(e) = Shipyard::parse(&text, "p.yaml") {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }

    #[test]
    fn yaml_like_text_never_panics(
        lines in prop::collection::vec(
            "( {0,6})(- )?(apiVersion|kind|spec|remediations|problemType|actionsOnOpen|action|value|name|stages|sequences)?(: )?([a-z0-9\"'{}\\[\\],.:/ -]{0,12})",
            0..12,
        )
    ) {
        let text = lines.join("\n");
        let _ = RemediationFile::parse(&text, "p.yaml");
        let _ = Shipyard::parse(&text, "p.yaml");
    }
}

// ---------------------------------------------------------------------------------------------
// The JSON Schema agrees with the parser

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read("schemas/remediation.schema.json")).unwrap();
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn as_json(rel: &str) -> Value {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_remediation_file_satisfies_the_schema() {
    let validator = schema();
    let mut files: Vec<String> = yaml_files("tests/vectors")
        .into_iter()
        .filter(|f| !is_shipyard(f))
        .collect();
    files.extend(yaml_files("tests/fixtures/remediation"));
    files.push("remediation.yaml".into());
    assert!(files.len() >= 10, "{files:?}");
    for rel in files {
        let instance = as_json(&rel);
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{rel}: {errors:?}");
        remediation(&rel);
    }
}

#[test]
fn the_schema_rejects_what_the_parser_rejects() {
    let validator = schema();
    for name in [
        "wrong-api-version",
        "wrong-kind",
        "missing-spec",
        "missing-remediations",
        "action-without-action",
        "remediations-not-a-list",
        "problem-type-is-a-list",
    ] {
        let rel = format!("tests/fixtures/invalid/{name}.yaml");
        assert!(
            !validator.is_valid(&as_json(&rel)),
            "{rel} satisfies the schema"
        );
        assert!(RemediationFile::parse(&read(&rel), &rel).is_err());
    }
}
