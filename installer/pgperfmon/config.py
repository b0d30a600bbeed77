"""The one configuration model: the YAML file, environment overrides, validation.

The validated configuration is stored in ``perfmon.config`` as one row per
leaf key (``collection.interval_seconds`` -> 60), where the in-database
functions read it with ``perfmon.setting(key)``.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pgperfmon import resources

Pct = Annotated[float, Field(ge=0, le=100)]


class _Section(BaseModel):
    # An unknown key is an error: a typo must not silently fall back to a default. A value
    # of the wrong YAML type is one too (strict): lax conversion stored `retention_days: true`
    # as 1 and took "30" for 30. A float key still takes an int (80 for 80.0).
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        # Every value is stored as jsonb in perfmon.config: PostgreSQL text holds no NUL
        # and no lone surrogate, and JSON has no NaN or infinity.
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in item):
                raise ValueError("expected text without NUL characters or lone surrogates "
                                 "(PostgreSQL cannot store them)")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("expected a finite number")
        return value


class Collection(_Section):
    interval_seconds: int = 60
    size_interval_seconds: Annotated[int, Field(ge=60, le=86400)] = 900
    retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    rollup_hourly_retention_days: Annotated[int, Field(ge=1, le=3650)] = 180
    rollup_daily_retention_days: Annotated[int, Field(ge=1, le=36500)] = 730
    partitions_ahead_days: Annotated[int, Field(ge=1, le=60)] = 3
    statement_top_n: Annotated[int, Field(ge=10, le=100_000)] = 5000
    relation_top_n: Annotated[int, Field(ge=10, le=1_000_000)] = 5000
    exclude_schemas: list[str] = Field(
        default_factory=lambda: ["pg_catalog", "information_schema", "pg_toast"]
    )
    statement_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 15_000
    lock_timeout_ms: Annotated[int, Field(ge=10, le=60_000)] = 1_000
    # Each distinct label set of a metric is a series: beyond this many, a new label set is
    # refused (perfmon.ingest_series), so a fresh label value per sample cannot grow the store.
    max_series_per_metric: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000

    @field_validator("interval_seconds")
    @classmethod
    def _cron_expressible(cls, value: int) -> int:
        # pg_cron 1.4 schedules whole minutes; below a minute the per-minute job
        # takes several samples, so the interval must divide the minute.
        if value < 60 and (value < 5 or 60 % value):
            raise ValueError("expected a divisor of 60 of at least 5 (5, 6, 10, 12, 15, 20, 30) "
                             "or a whole number of minutes in seconds (60, 120, ...)")
        if value >= 60 and value % 60:
            raise ValueError("expected a whole number of minutes in seconds (60, 120, ...) "
                             "or a divisor of 60 of at least 5")
        if value > 3600:
            raise ValueError("expected at most 3600 seconds")
        return value

    @field_validator("size_interval_seconds")
    @classmethod
    def _whole_minutes(cls, value: int) -> int:
        if value % 60 or (value > 3600 and value % 3600):
            raise ValueError("expected whole minutes up to an hour, or whole hours (in seconds)")
        return value


class PerformanceThresholds(_Section):
    slow_query_ms: Annotated[float, Field(gt=0)] = 1000.0
    connection_usage_pct: Pct = 80.0
    cache_hit_ratio_min_pct: Pct = 95.0
    replication_lag_seconds: Annotated[float, Field(gt=0)] = 60.0
    idle_in_transaction_seconds: Annotated[float, Field(gt=0)] = 300.0
    long_query_seconds: Annotated[float, Field(gt=0)] = 300.0


class Database(_Section):
    performance_thresholds: PerformanceThresholds = Field(default_factory=PerformanceThresholds)


class LevelThresholds(_Section):
    warning: Pct
    critical: Pct

    @model_validator(mode="after")
    def _ordered(self) -> LevelThresholds:
        if self.critical < self.warning:
            # A level left out takes its default: say so, or the user cannot see where it came from.
            shown = {name: f"{getattr(self, name)}{'' if name in self.model_fields_set else ', the default'}"
                     for name in ("warning", "critical")}
            raise ValueError(
                f"expected critical ({shown['critical']}) to be at least warning ({shown['warning']})"
            )
        return self


# Each threshold's own defaults per level, so that `cpu_pct: {warning: 70}` (or
# $CPU_WARNING_THRESHOLD alone) keeps the default critical (a default_factory on
# SystemThresholds is lost as soon as the mapping is given).
class CpuThresholds(LevelThresholds):
    warning: Pct = 80.0
    critical: Pct = 95.0


class MemoryThresholds(LevelThresholds):
    warning: Pct = 85.0
    critical: Pct = 95.0


class DiskThresholds(LevelThresholds):
    warning: Pct = 80.0
    critical: Pct = 90.0


class SystemThresholds(_Section):
    cpu_pct: CpuThresholds = Field(default_factory=CpuThresholds)
    memory_pct: MemoryThresholds = Field(default_factory=MemoryThresholds)
    disk_pct: DiskThresholds = Field(default_factory=DiskThresholds)


class System(_Section):
    agent_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    # An application agent is stale, then down, after this many expected
    # heartbeat intervals of silence (perfmon.agent_health).
    agent_stale_after_intervals: Annotated[float, Field(ge=1, le=1000)] = 2.0
    agent_down_after_intervals: Annotated[float, Field(ge=1, le=1000)] = 4.0
    # Every application beats as perfmon_agent under a name of its own choosing: beyond
    # this many registered agents a new name is refused (perfmon.agent_heartbeat).
    max_agents: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    thresholds: SystemThresholds = Field(default_factory=SystemThresholds)

    @field_validator("agent_interval_seconds")
    @classmethod
    def _host_sampler_schedulable(cls, value: int) -> int:
        # The in-database host sampler runs on pg_cron (whole minutes) through
        # perfmon.run_every_interval below a minute: the interval must divide it.
        if value < 60 and 60 % value:
            raise ValueError("expected a divisor of 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) "
                             "or a whole number of minutes in seconds (60, 120, ...)")
        if value >= 60 and value % 60:
            raise ValueError("expected a whole number of minutes in seconds (60, 120, ...) "
                             "or a divisor of 60")
        return value

    @model_validator(mode="after")
    def _stale_before_down(self) -> System:
        if self.agent_down_after_intervals < self.agent_stale_after_intervals:
            raise ValueError(
                f"expected agent_down_after_intervals ({self.agent_down_after_intervals}) to be at "
                f"least agent_stale_after_intervals ({self.agent_stale_after_intervals})")
        return self


class AnomalyDetection(_Section):
    enabled: bool = True
    # auto = envelope where PL/Python runs, its SQL twin (envelope_sql) elsewhere;
    # isolation_forest adds the multi-metric forest (docs/anomalies.md has the scores).
    algorithm: Literal["isolation_forest", "robust_zscore", "envelope", "envelope_sql",
                       "auto"] = "auto"
    sensitivity: Literal["low", "medium", "high"] = "medium"
    # Four whole weeks: every weekday four times (docs/anomalies.md has why and what it
    # measured). A window longer than collection.retention_days holds only what is kept.
    training_window_days: Annotated[int, Field(ge=1, le=365)] = 28
    # The straight lines of perfmon.forecasts: a short window follows a new growth rate.
    forecast_window_days: Annotated[int, Field(ge=1, le=365)] = 7
    retrain_interval_hours: Annotated[int, Field(ge=1, le=168)] = 6
    # An anomaly episode ends after this many normal samples in a row.
    episode_quiet_samples: Annotated[int, Field(ge=1, le=10_000)] = 72
    # The clocks a workload's daily rhythm keeps (an IANA name): the hours of the
    # envelope's daily profile, so that a daylight-saving change does not move them.
    timezone: Annotated[str, Field(min_length=1, max_length=100)] = "UTC"

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        # The name, not an offset or a POSIX rule: the database accepts only the names
        # of pg_timezone_names (perfmon.anomaly_timezone()), from the same tz database.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone name: expected an IANA name such as Europe/Berlin "
                             "or America/New_York, or UTC") from None
        return value


Glob = Annotated[str, Field(min_length=1, max_length=200)]


class SessionAction(_Section):
    # A recovery action on sessions (docs/alerting.md). Empty allow_roles = no role
    # is allowed: enabling an action also means naming whom it may touch.
    enabled: bool = False
    after_seconds: Annotated[float, Field(gt=0, le=86400)] = 300.0
    allow_roles: list[Glob] = Field(default_factory=list)
    allow_databases: list[Glob] = Field(default_factory=lambda: ["*"])


class ShedConnections(SessionAction):
    after_seconds: Annotated[float, Field(gt=0, le=86400)] = 600.0  # idle at least this long
    usage_pct: Pct = 95.0


# schema.table as SQL reads a qualified name, each part matched against its own name
# (perfmon.table_pattern_match, docs/alerting.md): "..." one exact name, "" a quote inside
# it; unquoted, lower case without dots or spaces, * any characters. "*" alone: every table.
_TABLE_PATTERN_PART = r'(?:"(?:[^"]|"")+"|[^." \t\n\r\f\vA-Z]+)'  # as in the SQL, to the character
_TABLE_PATTERN = re.compile(rf"\*|{_TABLE_PATTERN_PART}\.{_TABLE_PATTERN_PART}")


def _table_pattern(value: str) -> str:
    if _TABLE_PATTERN.fullmatch(value):
        return value
    if re.search(r'[A-Z]', re.sub(r'"(?:[^"]|"")*"', "", value)):
        raise ValueError('expected schema.table with unquoted names in lower case, as PostgreSQL '
                         'folds them (public.orders); a name with upper case in double quotes '
                         '(public."Orders")')
    raise ValueError('expected schema.table: public.orders, app.* (* = any characters within '
                     'the name), a name with dots, spaces, quotes or upper case in double quotes '
                     '("my.schema"."Order Lines", "" for a quote), or * for every table')


TablePattern = Annotated[Glob, AfterValidator(_table_pattern)]


class TableAction(_Section):
    enabled: bool = False
    allow_tables: list[TablePattern] = Field(default_factory=list)


class AnalyzeAction(TableAction):
    modified_pct: Pct = 20.0
    min_rows: Annotated[int, Field(ge=0)] = 1000


class VacuumAction(TableAction):
    dead_tuple_pct: Pct = 20.0
    min_dead_tuples: Annotated[int, Field(ge=0)] = 1000
    freeze_age_pct: Pct = 90.0  # of autovacuum_freeze_max_age


class IndexAction(_Section):
    # Builds only indexes approved with perfmon.approve_index(), CONCURRENTLY.
    enabled: bool = False


class AutoRecovery(_Section):
    # Actions that change the server are off until a DBA turns them on.
    enabled: bool = False
    dry_run: bool = True
    include_superusers: bool = False
    include_replication: bool = False
    include_pgperfmon: bool = False
    max_actions_per_hour: Annotated[int, Field(ge=1, le=100_000)] = 30
    watch_interval_seconds: Annotated[int, Field(ge=1, le=60)] = 1
    verify_timeout_ms: Annotated[int, Field(ge=100, le=60_000)] = 3000
    # How long pgperfmon recover's VACUUM or ANALYZE waits for its table's lock before it gives
    # up (failed), and perfmon.recover() for any lock while it plans and records its steps:
    # without it, a long transaction holding the table kept the run waiting for ever.
    lock_timeout_ms: Annotated[int, Field(ge=10, le=600_000)] = 5000
    cancel_long_queries: SessionAction = Field(default_factory=SessionAction)
    terminate_idle_in_transaction: SessionAction = Field(default_factory=SessionAction)
    terminate_lock_blockers: SessionAction = Field(
        default_factory=lambda: SessionAction(after_seconds=30))
    shed_idle_connections: ShedConnections = Field(default_factory=ShedConnections)
    analyze_stale_tables: AnalyzeAction = Field(default_factory=AnalyzeAction)
    vacuum_tables: VacuumAction = Field(default_factory=VacuumAction)
    create_approved_indexes: IndexAction = Field(default_factory=IndexAction)

    @field_validator("watch_interval_seconds")
    @classmethod
    def _divides_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("expected a divisor of 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)")
        return value


class Optimization(_Section):
    index_min_improvement_pct: Pct = 20.0
    unused_index_min_days: Annotated[int, Field(ge=1, le=3650)] = 14
    # The advisor (perfmon.refresh_recommendations): history window and thresholds.
    advice_window_days: Annotated[int, Field(ge=1, le=90)] = 7
    index_advisor_top_statements: Annotated[int, Field(ge=5, le=1000)] = 50
    # The scheduled advisor runs as perfmon_admin and can plan only statements on tables
    # it may read. true grants it pg_read_all_data (reading, never writing, every table).
    advisor_reads_all_tables: bool = False
    bloat_min_pct: Pct = 30.0
    bloat_min_bytes: Annotated[int, Field(ge=0)] = 10 * 1024 * 1024
    dead_tuple_max_pct: Pct = 20.0
    sequence_warning_pct: Pct = 75.0
    wraparound_warning_pct: Pct = 100.0
    storage_warning_days: Annotated[int, Field(ge=1, le=3650)] = 30
    backup_max_age_hours: Annotated[int, Field(ge=1, le=8760)] = 26
    auto_recovery: AutoRecovery = Field(default_factory=AutoRecovery)


class Levels(_Section):
    info: Pct = 0.0
    warning: Pct = 70.0
    critical: Pct = 90.0
    emergency: Pct = 98.0

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if not self.info <= self.warning <= self.critical <= self.emergency:
            raise ValueError("expected info <= warning <= critical <= emergency")
        return self


# The name of an environment variable, which secret_env and signing_secret_env hold: a value
# that is not one is often the secret itself, pasted there; it must never be stored or shown.
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=255)]
SECRET_NAME_KEYS = ("secret_env", "signing_secret_env")


class Channel(_Section):
    enabled: bool = False
    # The secret itself (URL with token, password) is read from this environment
    # variable at delivery time; it is never stored in the configuration.
    secret_env: EnvName | None = None
    min_level: Literal["info", "warning", "critical", "emergency"] = "warning"


# Each channel's own default secret variable, so that a file turning a channel on with
# `slack: {enabled: true}` keeps it (a default_factory on Channels would be lost).
class SlackChannel(Channel):
    secret_env: EnvName | None = "PGPERFMON_SLACK_WEBHOOK_URL"


class EmailChannel(Channel):
    secret_env: EnvName | None = "PGPERFMON_SMTP_PASSWORD"
    smtp_host: str = "localhost"
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    starttls: bool = True
    ca_file: str | None = None  # CA bundle to verify the SMTP server with (default: the system's)
    username: str | None = None
    sender: str = "pgperfmon@localhost"
    recipients: list[str] = Field(default_factory=list)


class WebhookChannel(Channel):
    secret_env: EnvName | None = "PGPERFMON_WEBHOOK_URL"
    # The HMAC-SHA256 key of the X-Pgperfmon-Signature header, read from this variable.
    signing_secret_env: EnvName | None = "PGPERFMON_WEBHOOK_SIGNING_KEY"


class SmsChannel(Channel):
    secret_env: EnvName | None = "PGPERFMON_SMS_TOKEN"
    gateway_url: str | None = None
    account_sid: str | None = None  # user of the gateway's basic auth (Twilio: the account SID)
    sender: str | None = None       # the From number
    recipients: list[str] = Field(default_factory=list)
    min_level: Literal["info", "warning", "critical", "emergency"] = "critical"


class Channels(_Section):
    slack: SlackChannel = Field(default_factory=SlackChannel)
    webhook: WebhookChannel = Field(default_factory=WebhookChannel)
    email: EmailChannel = Field(default_factory=EmailChannel)
    sms: SmsChannel = Field(default_factory=SmsChannel)


class Alerting(_Section):
    enabled: bool = True
    levels: Levels = Field(default_factory=Levels)
    cooldown_minutes: Annotated[int, Field(ge=0, le=10080)] = 15
    escalation_minutes: Annotated[int, Field(ge=1, le=10080)] = 30
    # 14 attempts with the waits below span 80 minutes: a channel down for an hour loses
    # nothing (tests/test_faults.py).
    max_delivery_attempts: Annotated[int, Field(ge=1, le=100)] = 14
    # Delivery retries wait base * 2^(attempt - 1) seconds, at most retry_max_seconds.
    retry_base_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    retry_max_seconds: Annotated[float, Field(gt=0, le=86400)] = 600.0
    delivery_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    # The in-database worker (job deliver_alerts) looks at the outbox this often.
    delivery_poll_seconds: Annotated[float, Field(ge=0.1, le=60)] = 1.0
    # Escalated alerts also go to these channels, whatever their min_level.
    escalation_channels: list[Literal["slack", "webhook", "email", "sms"]] = Field(default_factory=list)
    # Anomalies and open recommendations at or above this level raise alerts.
    anomaly_min_level: Literal["info", "warning", "critical", "emergency"] = "warning"
    recommendation_min_level: Literal["info", "warning", "critical", "emergency"] = "critical"
    # More agents silent at once than this share one agent_down alert that names them
    # (those already alerting on their own keep their alert).
    agent_down_max_alerts: Annotated[int, Field(ge=1, le=10_000)] = 5
    channels: Channels = Field(default_factory=Channels)


class Reporting(_Section):
    # Scheduled executive reports, queued in the alert outbox for these channels (those of
    # them that are enabled) once per UTC day / ISO week / month, at or after hour_utc.
    schedule: Literal["daily", "weekly", "monthly"] | None = None
    hour_utc: Annotated[int, Field(ge=0, le=23)] = 7
    channels: list[Literal["slack", "webhook", "email", "sms"]] = Field(
        default_factory=lambda: ["email", "slack", "webhook"])


class Business(_Section):
    # The cost model of the health score and the executive report (docs/health.md).
    # Money defaults to null = not configured: the figures then say so instead of
    # inventing a cost.
    currency: Annotated[str, Field(min_length=1, max_length=10)] = "USD"
    instance_cost_per_hour: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    revenue_per_hour: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    target_cost_per_1k_transactions: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    apdex_target_ms: Annotated[float, Field(gt=0, le=600_000, allow_inf_nan=False)] = 500.0
    availability_target_pct: Annotated[float, Field(gt=0, lt=100)] = 99.9
    health_retention_days: Annotated[int, Field(ge=1, le=3650)] = 90


class Config(_Section):
    collection: Collection = Field(default_factory=Collection)
    database: Database = Field(default_factory=Database)
    system: System = Field(default_factory=System)
    anomaly_detection: AnomalyDetection = Field(default_factory=AnomalyDetection)
    optimization: Optimization = Field(default_factory=Optimization)
    alerting: Alerting = Field(default_factory=Alerting)
    reporting: Reporting = Field(default_factory=Reporting)
    business: Business = Field(default_factory=Business)


# The seed's environment variables, and the key each one overrides.
ENV_OVERRIDES: dict[str, str] = {
    "PERFORMANCE_COLLECTION_INTERVAL": "collection.interval_seconds",
    "PERFORMANCE_RETENTION_DAYS": "collection.retention_days",
    "SLOW_QUERY_THRESHOLD": "database.performance_thresholds.slow_query_ms",
    "CONNECTION_USAGE_THRESHOLD": "database.performance_thresholds.connection_usage_pct",
    "CACHE_HIT_RATIO_THRESHOLD": "database.performance_thresholds.cache_hit_ratio_min_pct",
    "CPU_WARNING_THRESHOLD": "system.thresholds.cpu_pct.warning",
    "MEMORY_WARNING_THRESHOLD": "system.thresholds.memory_pct.warning",
    "DISK_WARNING_THRESHOLD": "system.thresholds.disk_pct.warning",
    "ANOMALY_DETECTION_ENABLED": "anomaly_detection.enabled",
    "ANOMALY_SENSITIVITY": "anomaly_detection.sensitivity",
    "ANOMALY_TRAINING_WINDOW_DAYS": "anomaly_detection.training_window_days",
    "AUTO_RECOVERY_ENABLED": "optimization.auto_recovery.enabled",
    "ALERTING_ENABLED": "alerting.enabled",
}


# How many values (scalars, lists, mappings) a value may stand for once its YAML aliases are
# expanded: the whole default configuration is about 150.
MAX_EXPANDED_VALUES = 10_000
# How deep values may nest (a list in a list ...): the default configuration is 4 levels deep.
# PyYAML composes and constructs a value by recursion, a few Python frames per level.
MAX_NESTING = 100


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping: YAML keeps the
    last, so a second ``alerting:`` section dropped the first one's settings without a word.
    A key that a merge (``<<:``) brings may still be set again, as YAML means it.

    It also refuses aliases that expand too far. Nine aliases of a list of nine aliases of
    ... (a "billion laughs") load as a few shared lists, but whatever walks the value (a
    message quoting it, validation) meets every one of its 9^levels copies: seconds and
    gigabytes from a 1 kB file. Each node's expanded size is counted as it is composed.

    And values nested past MAX_NESTING levels: PyYAML composes them by recursion, and a few
    hundred levels of ``[[[...]]]`` ended in a RecursionError, a traceback."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._expanded: dict[int, tuple[int, bool]] = {}  # id(node) -> (values, holds an alias)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        alias = self.peek_event() if self.check_event(yaml.AliasEvent) else None
        if self._depth >= MAX_NESTING:
            raise yaml.composer.ComposerError(
                None, None, f"this value is nested more than {MAX_NESTING} levels deep; "
                "a configuration needs no such depth", self.peek_event().start_mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias is not None:
            if id(node) not in self._expanded:  # still being composed: it holds its own alias
                raise yaml.composer.ComposerError(
                    None, None, f"the alias *{alias.anchor} stands for a value that holds it: "
                    "a configuration cannot refer to itself", alias.start_mark)
            values, _ = self._expanded[id(node)]
            self._expanded[id(node)] = (values, True)
            return node
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        counted = [self._expanded[id(child)] for child in children]
        values = 1 + sum(n for n, _ in counted)
        aliased = any(a for _, a in counted)
        if values > MAX_EXPANDED_VALUES and aliased:
            raise yaml.composer.ComposerError(
                None, None, f"this value's aliases expand it to more than {MAX_EXPANDED_VALUES:,} "
                "values (aliases of aliases, a 'billion laughs'?); a configuration needs no such "
                "size", node.start_mark)
        self._expanded[id(node)] = (values, aliased)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: the SafeLoader refuses it below
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice (lines {first} and {line}); "
                    "YAML would keep only the last", key_node.start_mark)
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


class ConfigError(Exception):
    """An invalid configuration; ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"invalid configuration in {source}:\n" + "\n".join(
            f"  - {p}" for p in problems
        ))


def _shown(value: Any) -> str:
    """A value of the file for a message: a 10 kB value (or a whole file) is not a message."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:76] + "...'"


def _describe_error(error: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    # A key of the file is the user's text: one with a control character (an escape sequence,
    # a line break) is shown quoted and escaped, never as it is.
    key = ".".join(str(part) if str(part).isprintable() else repr(part) for part in error["loc"])
    # A check of a whole section (warning <= critical) names the variables that set its keys.
    where = [var for dotted, var in origin.items() if key in (dotted, dotted.rpartition(".")[0])]
    source = f" (from {', '.join('$' + var for var in where)})" if where else ""
    msg = error["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key{source}; expected one of the documented keys"
    if error["loc"] and error["loc"][-1] in SECRET_NAME_KEYS:
        return (f"{key}{source}: expected the name of the environment variable that holds the "
                "secret (letters, digits and _), not the secret itself; the value is not shown")
    shown = _shown(error["input"])
    return f"{key}{source}: got {shown}; {msg[0].lower()}{msg[1:]}"


def _set_path(tree: dict, dotted: str, value: Any) -> bool:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return False  # a section of the wrong type ("collection: 5") is left for validation
        node = child
    node[leaf] = value
    return True


def load(path: Path | str | None = None, env: Mapping[str, str] | None = None,
         stored: Mapping[str, Any] | None = None) -> Config:
    """Read, override from the environment, and validate; raise ConfigError naming each problem.

    stored: instead of a file, the rows of a database's perfmon.config (dotted key ->
    value), which an upgrade without a file keeps: keys this release no longer has are
    left out, and those it adds take their defaults."""
    env = os.environ if env is None else env
    source = str(path) if path else "the built-in defaults"
    raw: Any = {}
    if stored is not None:
        source = "the configuration stored in the database"
        known = flatten(Config())
        raw = unflatten({key: value for key, value in stored.items() if key in known})
    elif path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(source, [f"not UTF-8 text: byte {exc.start} is {exc.object[exc.start]:#04x}"]
                              ) from None
        stream = io.StringIO(text)
        stream.name = source  # the file's name in the error's position, not "<unicode string>"
        try:
            raw = yaml.load(stream, Loader=_Loader)  # a SafeLoader, keys given twice refused
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(source, [f"expected a mapping of sections at the top, got {_shown(raw)}"])
    origin: dict[str, str] = {}
    for var, dotted in ENV_OVERRIDES.items():
        if var in env:
            # YAML scalars, so that "30", "true" and "medium" mean what they say.
            try:
                value = yaml.load(env[var], Loader=_Loader)  # as the file: no billion laughs
            except yaml.YAMLError:
                value = env[var]
            if _set_path(raw, dotted, value):
                origin[dotted] = var
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe_error(e, origin) for e in exc.errors()]
        if stored is not None:  # values an earlier release took, which this one refuses
            problems.append("nothing was changed: run the upgrade again with --config FILE "
                            "giving the corrected values")
        raise ConfigError(source, problems) from None


def flatten(config: Config) -> dict[str, Any]:
    """Leaf keys in dotted form, JSON values: what is stored in perfmon.config."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else key, value)
        else:
            out[prefix] = node

    walk("", config.model_dump(mode="json"))
    return out


def unflatten(rows: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in rows.items():
        _set_path(tree, dotted, value)
    return tree


def to_yaml(tree: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(tree), sort_keys=False, default_flow_style=False)


def template_path() -> Path:
    return resources.default_config_file()
