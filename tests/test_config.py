"""The configuration model: template, environment overrides, messages that name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pgperfmon import cli, config


def test_template_matches_the_defaults() -> None:
    assert config.load(config.template_path(), env={}) == config.load(None, env={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("collection:\n  interval_seconds: 120\n")
    cfg = config.load(file, env={"PERFORMANCE_COLLECTION_INTERVAL": "30",
                                 "SLOW_QUERY_THRESHOLD": "250",
                                 "ANOMALY_SENSITIVITY": "high",
                                 "AUTO_RECOVERY_ENABLED": "true"})
    assert cfg.collection.interval_seconds == 30
    assert cfg.database.performance_thresholds.slow_query_ms == 250
    assert cfg.anomaly_detection.sensitivity == "high"
    assert cfg.optimization.auto_recovery.enabled is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("collection:\n  interval_seconds: 45\n",
         "collection.interval_seconds: got 45; expected a divisor of 60"),
        ("collection:\n  retention_days: abc\n",
         "collection.retention_days: got 'abc'; input should be a valid integer"),
        ("collection:\n  retention_days: 0\n",
         "collection.retention_days: got 0; input should be greater than or equal to 1"),
        ("colection:\n  interval_seconds: 60\n", "colection: unknown key"),
        ("system:\n  thresholds:\n    cpu_pct: {warning: 90, critical: 80}\n",
         "system.thresholds.cpu_pct: got {'warning': 90, 'critical': 80}; expected critical (80.0)"),
        ("alerting:\n  levels: {warning: 95, critical: 90}\n",
         "expected info <= warning <= critical <= emergency"),
        ("anomaly_detection:\n  sensitivity: extreme\n",
         "anomaly_detection.sensitivity: got 'extreme'; input should be 'low', 'medium' or 'high'"),
        ("database:\n  performance_thresholds:\n    cache_hit_ratio_min_pct: .nan\n",
         "cache_hit_ratio_min_pct: got nan"),
        ("- just\n- a list\n", "expected a mapping of sections at the top"),
        ("collection: [unclosed\n", "not valid YAML"),
        # Of the wrong type: refused, not converted.
        # true would have been stored as 1: a day of history, the rest dropped.
        ("collection:\n  retention_days: true\n",
         "collection.retention_days: got True; input should be a valid integer"),
        ("collection:\n  retention_days: '30'\n",
         "collection.retention_days: got '30'; input should be a valid integer"),
        ("collection:\n  retention_days: 30.0\n",  # a fraction was refused already, 30.0 was not
         "collection.retention_days: got 30.0; input should be a valid integer"),
        ("alerting:\n  enabled: 1\n", "alerting.enabled: got 1; input should be a valid boolean"),
        ("alerting:\n  enabled: 'false'\n",
         "alerting.enabled: got 'false'; input should be a valid boolean"),
        ("database:\n  performance_thresholds:\n    slow_query_ms: '250'\n",
         "database.performance_thresholds.slow_query_ms: got '250'; input should be a valid number"),
        ("system:\n  thresholds:\n    cpu_pct: {warning: true}\n",
         "system.thresholds.cpu_pct.warning: got True; input should be a valid number"),
        ("system:\n  max_agents: 0\n",
         "system.max_agents: got 0; input should be greater than or equal to 1"),
        ("system:\n  max_agents: '1000'\n", "system.max_agents: got '1000'; input should be a valid integer"),
        ("collection:\n  max_series_per_metric: 0\n",
         "collection.max_series_per_metric: got 0; input should be greater than or equal to 1"),
        ("alerting:\n  agent_down_max_alerts: 0\n",
         "alerting.agent_down_max_alerts: got 0; input should be greater than or equal to 1"),
        # Matched as one string, a.b.c allowed both "a.b"."c" and "a"."b.c".
        ("optimization:\n  auto_recovery:\n    vacuum_tables: {allow_tables: [a.b.c]}\n",
         "optimization.auto_recovery.vacuum_tables.allow_tables.0: got 'a.b.c'; expected schema.table: "
         'public.orders, app.* (* = any characters within the name), a name with dots, spaces, quotes '
         'or upper case in double quotes ("my.schema"."Order Lines", "" for a quote), or * for every table'),
        ("optimization:\n  auto_recovery:\n    analyze_stale_tables: {allow_tables: [orders]}\n",
         "analyze_stale_tables.allow_tables.0: got 'orders'; expected schema.table"),
        ("optimization:\n  auto_recovery:\n    analyze_stale_tables: {allow_tables: [public.Orders]}\n",
         "analyze_stale_tables.allow_tables.0: got 'public.Orders'; expected schema.table with unquoted "
         'names in lower case, as PostgreSQL folds them (public.orders); a name with upper case in double '
         'quotes (public."Orders")'),
    ],
)
def test_invalid_file_names_key_value_and_expectation(tmp_path: Path, text: str,
                                                      expected: str) -> None:
    file = tmp_path / "bad.yml"
    file.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(file, env={})
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML keeps the last of a key given twice: the first section's settings were dropped
        # without a word (here interval_seconds: 30 fell back to 60).
        ("collection:\n  interval_seconds: 30\nalerting:\n  enabled: false\ncollection:\n"
         "  retention_days: 5\n",
         "key 'collection' is given twice (lines 1 and 5); YAML would keep only the last"),
        ("system:\n  thresholds:\n    cpu_pct: {warning: 70, warning: 99}\n",
         "key 'warning' is given twice (lines 3 and 3)"),
    ],
)
def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path, text: str, expected: str) -> None:
    file = tmp_path / "twice.yml"
    file.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(file, env={})
    assert expected in str(err.value)
    assert f'in "{file}", line' in str(err.value)  # the file's name, not "<unicode string>"


def test_an_unknown_key_with_control_characters_is_shown_as_text(tmp_path: Path) -> None:
    # The key went to the terminal as it was: an escape sequence cleared the screen, a line
    # break forged a problem line of its own.
    file = tmp_path / "c.yml"
    file.write_text('collection:\n  "\\x1b[2J": 1\n  "x\\n  - fine": 2\n')
    result = CliRunner().invoke(cli.main, ["config", "validate", str(file)], color=True)
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        "  - collection.'\\x1b[2J': unknown key; expected one of the documented keys",
        "  - collection.'x\\n  - fine': unknown key; expected one of the documented keys"]


def test_a_file_of_one_long_line_is_refused_in_one_short_line(tmp_path: Path) -> None:
    # "expected a mapping ..., got" quoted the whole text: a 3 MB line to the terminal.
    file = tmp_path / "c.yml"
    file.write_text("x" * 100_000 + "\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(file, env={})
    assert err.value.problems == ["expected a mapping of sections at the top, got '" + "x" * 75 + "...'"]


def test_aliases_that_expand_past_any_configuration_are_refused(tmp_path: Path) -> None:
    # A "billion laughs": each level a list of nine aliases of the level before. It loads as
    # a few shared lists, but the message quoting the bad value wrote out all 9^levels
    # copies before cutting it to 80 characters (seconds and gigabytes at 9 levels).
    levels = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 7)]
    file = tmp_path / "laughs.yml"
    file.write_text("\n".join(levels) + "\ncollection: {interval_seconds: *l6}\n")
    result = CliRunner().invoke(cli.main, ["config", "validate", str(file)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: invalid configuration in {file}:",
        "  - not valid YAML: this value's aliases expand it to more than 10,000 values (aliases of "
        "aliases, a 'billion laughs'?); a configuration needs no such size",
        f'  in "{file}", line 5, column 5']


def test_aliases_in_an_environment_value_are_refused_the_same() -> None:
    # The variable's value is YAML too: refused as YAML, it is taken as the text it is.
    text = "- &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"- &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 7))
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env={"PERFORMANCE_COLLECTION_INTERVAL": text})
    assert err.value.problems == [
        "collection.interval_seconds (from $PERFORMANCE_COLLECTION_INTERVAL): got "
        + repr(text)[:76] + "...'; input should be a valid integer"]


def test_an_alias_inside_its_own_value_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "loop.yml"
    file.write_text("collection: &c {exclude: *c}\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(file, env={})
    assert "the alias *c stands for a value that holds it" in str(err.value)


def test_a_value_nested_a_thousand_levels_deep_is_refused(tmp_path: Path) -> None:
    # PyYAML composes a value by recursion: a list in a list ... 1,000 levels deep (2 kB)
    # ended in a RecursionError, a traceback instead of a message naming the file.
    file = tmp_path / "deep.yml"
    file.write_text("collection:\n  exclude_schemas: " + "[" * 1000 + "]" * 1000 + "\n")
    result = CliRunner().invoke(cli.main, ["config", "validate", str(file)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"error: invalid configuration in {file}:",
        "  - not valid YAML: this value is nested more than 100 levels deep; a configuration needs "
        "no such depth",
        f'  in "{file}", line 2, column 118']
    env = {"PERFORMANCE_COLLECTION_INTERVAL": "{a: " * 1000 + "}" * 1000}  # taken as the text it is
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env=env)
    assert err.value.problems[0].startswith("collection.interval_seconds (from $PERFORMANCE_COLLECTION_")


def test_aliases_a_configuration_uses_still_load(tmp_path: Path) -> None:
    file = tmp_path / "shared.yml"
    file.write_text("system:\n  thresholds:\n    cpu_pct: &levels {warning: 70, critical: 90}\n"
                    "    memory_pct: *levels\n    disk_pct: *levels\n")
    cfg = config.load(file, env={})
    assert cfg.system.thresholds.disk_pct.critical == cfg.system.thresholds.memory_pct.warning + 20 == 90


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    file = tmp_path / "merge.yml"
    file.write_text("collection:\n  <<: {interval_seconds: 30, retention_days: 5}\n  retention_days: 9\n")
    cfg = config.load(file, env={})
    assert (cfg.collection.interval_seconds, cfg.collection.retention_days) == (30, 9)


@pytest.mark.parametrize("key", ["slack: {secret_env: %s}", "webhook: {signing_secret_env: %s}"])
def test_a_secret_where_its_variable_name_belongs_is_refused_without_showing_it(
        tmp_path: Path, key: str) -> None:
    # The webhook URL pasted as secret_env was valid: stored in perfmon.config, printed by
    # config show, and named as the "missing variable" in delivery errors.
    token = "https://hooks.slack.com/services/T0/B0/s3cr3tT0k3n"
    file = tmp_path / "c.yml"
    file.write_text("alerting:\n  channels:\n    " + key % token + "\n")
    result = CliRunner().invoke(cli.main, ["config", "validate", str(file)])
    assert result.exit_code == 1
    name = key.split(":")[0] + "." + key.split("{")[1].split(":")[0]
    assert (f"alerting.channels.{name}: expected the name of the environment variable that holds "
            "the secret (letters, digits and _), not the secret itself; the value is not shown"
            ) in result.output
    assert "s3cr3t" not in result.output
    file.write_text("alerting:\n  channels:\n    " + key % "MY_HOOK_2" + "\n")
    assert CliRunner().invoke(cli.main, ["config", "validate", str(file)]).exit_code == 0


@pytest.mark.parametrize(("var", "key", "default_critical"), [
    ("CPU_WARNING_THRESHOLD", "cpu_pct", 95), ("MEMORY_WARNING_THRESHOLD", "memory_pct", 95),
    ("DISK_WARNING_THRESHOLD", "disk_pct", 90)])
def test_warning_threshold_alone_keeps_the_default_critical(tmp_path: Path, var: str, key: str,
                                                            default_critical: int) -> None:
    """The documented overrides used to fail on their own: `critical: field required`."""
    from_env = getattr(config.load(None, env={var: "70"}).system.thresholds, key)
    assert (from_env.warning, from_env.critical) == (70, default_critical)
    file = tmp_path / "c.yml"
    file.write_text(f"system:\n  thresholds:\n    {key}: {{warning: 70}}\n")
    from_file = getattr(config.load(file, env={}).system.thresholds, key)
    assert from_file == from_env
    file.write_text(f"system:\n  thresholds:\n    {key}: {{critical: 99}}\n")
    assert getattr(config.load(file, env={}).system.thresholds, key).critical == 99


def test_warning_above_the_default_critical_names_both() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env={"CPU_WARNING_THRESHOLD": "97"})
    assert ("system.thresholds.cpu_pct (from $CPU_WARNING_THRESHOLD): got {'warning': 97}; "
            "expected critical (95.0, the default) to be at least warning (97.0)") in str(err.value)



def test_environment_values_are_yaml_scalars_of_the_right_type() -> None:
    cfg = config.load(None, env={"PERFORMANCE_RETENTION_DAYS": "45", "ALERTING_ENABLED": "false",
                                 "CONNECTION_USAGE_THRESHOLD": "85.5",
                                 "ANOMALY_DETECTION_ENABLED": "true"})
    assert cfg.collection.retention_days == 45
    assert cfg.alerting.enabled is False
    assert cfg.database.performance_thresholds.connection_usage_pct == 85.5
    assert cfg.anomaly_detection.enabled is True
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env={"PERFORMANCE_RETENTION_DAYS": "7.0"})
    assert "collection.retention_days (from $PERFORMANCE_RETENTION_DAYS): got 7.0" in str(err.value)


def test_an_override_does_not_hide_a_section_of_the_wrong_type(tmp_path: Path) -> None:
    # The override replaced "collection: 5" by a mapping of its own, and the file was valid.
    file = tmp_path / "c.yml"
    file.write_text("collection: 5\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(file, env={"PERFORMANCE_COLLECTION_INTERVAL": "30"})
    assert "collection: got 5; input should be a valid dictionary" in str(err.value)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(config.ConfigError) as err:
        config.load(None, env={"PERFORMANCE_COLLECTION_INTERVAL": "often"})
    assert "collection.interval_seconds (from $PERFORMANCE_COLLECTION_INTERVAL): got 'often'" in str(
        err.value)


def test_cli_validate(tmp_path: Path) -> None:
    good = CliRunner().invoke(cli.main, ["config", "validate", str(config.template_path())])
    assert good.exit_code == 0
    assert "valid" in good.output
    missing = CliRunner().invoke(cli.main, ["config", "validate", str(tmp_path / "none.yml")])
    assert missing.exit_code == 1
    assert "cannot read the file" in missing.output


def test_flatten_round_trip() -> None:
    cfg = config.load(None, env={})
    flat = config.flatten(cfg)
    assert flat["collection.interval_seconds"] == 60
    assert config.Config.model_validate(config.unflatten(flat)) == cfg


def test_turning_a_channel_on_keeps_its_secret_variable(tmp_path: Path) -> None:
    """Found by the upgrade test (tests/test_upgrade.py): `slack: {enabled: true}` used to
    drop the channel's default secret_env, and its messages then waited for ever."""
    file = tmp_path / "c.yml"
    file.write_text("alerting:\n  channels:\n    slack: {enabled: true}\n    sms: {enabled: true}\n"
                    "    webhook: {enabled: true}\n    email: {enabled: true}\n")
    channels = config.load(file, env={}).alerting.channels
    defaults = config.Config().alerting.channels
    for name in ("slack", "webhook", "email", "sms"):
        assert getattr(channels, name).enabled is True
        assert getattr(channels, name).secret_env == getattr(defaults, name).secret_env is not None
