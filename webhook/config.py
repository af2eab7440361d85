"""Settings: environment ``NODELIMITS_*`` (nested with ``__``) over an optional YAML file.

Precedence, first wins: explicit arguments (the CLI) > environment > YAML file >
defaults. Unknown keys are errors, so a misspelt setting fails at start instead of being
silently ignored. Build :class:`Settings` once (:func:`load_settings`) and pass it, or the
sub-model a component needs, down; there is no module-level instance.
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from webhook.core.devices import AcceleratorRule, DeviceCount
from webhook.core.kinds import BUILTIN_KINDS
from webhook.core.policy import PolicySettings

__all__ = [
    "AcceleratorRule",
    "AdmissionSettings",
    "CacheSettings",
    "CertificateSettings",
    "ConfigError",
    "DeviceCount",
    "EnforcementMode",
    "FailureMode",
    "PlatformSettings",
    "PolicySettings",
    "ServerSettings",
    "Settings",
    "TokenSource",
    "load_settings",
]

CONFIG_FILE_ENV = "NODELIMITS_CONFIG_FILE"
Seconds = Annotated[float, Field(gt=0)]


class ConfigError(ValueError):
    """Invalid configuration; ``problems`` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class EnforcementMode(enum.StrEnum):
    DENY = "deny"  # reject what does not fit
    WARN = "warn"  # allow, with the violations as warnings
    AUDIT = "audit"  # allow silently; log and count only


class FailureMode(enum.StrEnum):
    CLOSED = "closed"  # platform down and no usable cached limits -> deny
    OPEN = "open"  # ... -> allow with a warning, counted in nodelimits_fail_open_total


class TokenSource(enum.StrEnum):
    NONE = "none"  # no token header (simulator without auth, or a proxy adds it)
    FILE = "file"  # a static token in a file (a mounted Secret), re-read when it changes
    AKSK = "aksk"  # POST /api/user/v3/tokens with an HMAC-SHA256 signature
    PASSWORD = "password"  # noqa: S105 - POST /ac/openapi/v2/tokens with user / password / orgId


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class CacheSettings(_Model):
    ttl: Seconds = 60.0
    """Seconds a fetched limit is fresh; after that it is refreshed in the background."""
    max_stale: Seconds = 3600.0
    """Seconds a limit may be used after it went stale while the platform is failing."""
    negative_ttl: Seconds = 10.0
    """Seconds an unknown group (10004) is remembered, to spare the platform."""
    max_entries: Annotated[int, Field(ge=1)] = 4096
    """Bound on cached (group, type) pairs with limits; least recently used are evicted."""
    max_negative_entries: Annotated[int, Field(ge=1)] = 1024
    """Bound on remembered unknown groups, apart: they never evict real limits."""
    unknown_lookups_per_second: Annotated[float, Field(gt=0)] = 10.0
    """Lookups of (group, type) pairs without cached limits, per second (burst: 20); more
    wait, up to the platform deadline, then are denied (never failed open)."""
    group_list_min_interval: Seconds = 5.0
    """Seconds between forced refreshes of the resource-group list, made when a pod names a
    group the cached list lacks (created on the platform since) or whose lookup said
    unknown. A new group is seen at once; a flood of invented names costs the platform one
    list request per interval (a second new group within it waits up to the interval)."""


class PlatformSettings(_Model):
    """Where the Open API is and how to authenticate."""

    base_url: AnyHttpUrl | None = None
    """Base of the AI service (``{aiUrl}``). None: discovered from center_url."""
    center_url: AnyHttpUrl = AnyHttpUrl("https://www.scnet.cn")
    """Where ``/ac/openapi/v2/center`` and the token endpoints are."""
    aksk_url: AnyHttpUrl = AnyHttpUrl("https://api.scnet.cn")
    """Where ``/api/user/v3/tokens`` (AK/SK) is."""
    limits_file: Path | None = None
    """Static limits in the limits-file format instead of the live API (offline, air-gapped)."""
    token_source: TokenSource = TokenSource.NONE
    token_file: Path | None = None
    """For token_source=file: a file holding the token; re-read when it changes."""
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None
    org_id: SecretStr | None = None
    secret_dir: Path | None = None
    """A directory (mounted Secret) with files accessKey, secretKey, user, password, orgId."""
    cluster_id: str | None = None
    """Region whose token to use (clusterId); None: the only non-zero region offered."""
    connect_timeout: Seconds = 0.5
    """Seconds to open a connection to the platform."""
    request_timeout: Seconds = 1.0
    """Seconds for one attempt to get an answer."""
    deadline: Seconds = 2.0
    """Seconds for a whole lookup including retries; keep well under the webhook timeout."""
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    """Retries of a transient failure within the deadline."""
    verify_tls: bool = True
    ca_bundle: Path | None = None
    """A PEM bundle of CAs to trust for the platform (private CAs)."""
    token_refresh_margin: Seconds = 300.0
    """Refresh a token this many seconds before its expireTime."""
    max_connections: Annotated[int, Field(ge=1)] = 20

    @model_validator(mode="after")
    def _token_source_complete(self) -> PlatformSettings:
        missing: list[str] = []
        has_dir = self.secret_dir is not None
        if self.token_source is TokenSource.FILE and self.token_file is None:
            missing.append("token_file")
        if self.token_source is TokenSource.AKSK and not has_dir:
            missing += [k for k in ("access_key", "secret_key", "user") if getattr(self, k) is None]
        if self.token_source is TokenSource.PASSWORD and not has_dir:
            missing += [k for k in ("user", "password", "org_id") if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"token_source={self.token_source.value} needs {', '.join(missing)}"
                + ("" if self.token_source is TokenSource.FILE else " (or secret_dir)")
            )
        return self


class ServerSettings(_Model):
    """The TLS webhook listener and the metrics/probe listener."""

    host: str = "0.0.0.0"  # noqa: S104 - a webhook in a pod must listen beyond loopback
    port: Annotated[int, Field(ge=1, le=65535)] = 9443
    cert_file: Path = Path("/tls/tls.crt")
    key_file: Path = Path("/tls/tls.key")
    cert_check_interval: Seconds = 10.0
    """Seconds between checks of the cert files for rotation."""
    metrics_host: str = "0.0.0.0"  # noqa: S104
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    shutdown_delay: Annotated[float, Field(ge=0, le=60)] = 5.0
    """Seconds to keep serving after SIGTERM while endpoints drop the pod (not ready) and
    kube-proxy stops sending new connections; responses meanwhile close their connection."""
    manage_webhook_url: str | None = None
    """Development only: let kopf create a webhook configuration pointing at this URL."""
    ca_file: Path | None = None
    """Development only: CA bundle put into the kopf-managed configuration's caBundle."""
    client_ca_file: Path | None = None
    """Require a client certificate signed by this CA (the apiserver's, configured by its
    AdmissionConfiguration kubeConfigFile); None: any client may connect."""
    max_review_bytes: Annotated[int, Field(ge=65536)] = 6 * 2**20
    """Largest AdmissionReview read; larger ones are denied, saying so."""
    header_timeout: Seconds = 10.0
    """TLS handshake, and each request's headers (also: idle keep-alive connections)."""
    body_timeout: Seconds = 10.0
    max_connections: Annotated[int, Field(ge=1)] = 1000
    max_connections_per_client: Annotated[int, Field(ge=1)] = 250


CORE_KINDS = (
    "Pod",
    "Job",
    "CronJob",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "PodTemplate",
)
TABLE_KINDS = tuple(dict.fromkeys(f"{r.kind}.{r.group}" for r in BUILTIN_KINDS))
"""The kind table's kinds as ``admission.kinds`` names them: ``Kind.group``."""
KindName = Literal[
    "Pod",
    "Job",
    "CronJob",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "PodTemplate",
    "Job.batch.volcano.sh",
    "CronJob.batch.volcano.sh",
    "PyTorchJob.kubeflow.org",
    "TFJob.kubeflow.org",
    "XGBoostJob.kubeflow.org",
    "PaddleJob.kubeflow.org",
    "JAXJob.kubeflow.org",
    "MPIJob.kubeflow.org",
    "JobSet.jobset.x-k8s.io",
    "LeaderWorkerSet.leaderworkerset.x-k8s.io",
    "RayCluster.ray.io",
    "RayService.ray.io",
    "RayJob.ray.io",
    "Workflow.argoproj.io",
    "WorkflowTemplate.argoproj.io",
    "ClusterWorkflowTemplate.argoproj.io",
    "CronWorkflow.argoproj.io",
    "SparkApplication.sparkoperator.k8s.io",
    "ScheduledSparkApplication.sparkoperator.k8s.io",
    "TrainJob.trainer.kubeflow.org",
]
"""What ``admission.kinds`` may list: spelled out so the chart's schema can mirror it
(tests/unit/test_config.py checks it against CORE_KINDS and the kind table)."""


class AdmissionSettings(_Model):
    mode: EnforcementMode = EnforcementMode.DENY
    failure_mode: FailureMode = FailureMode.CLOSED
    kinds: Annotated[
        tuple[KindName, ...],
        NoDecode,  # NODELIMITS_ADMISSION__KINDS=Pod,Job rather than a JSON list
    ] = CORE_KINDS + TABLE_KINDS  # type: ignore[assignment]
    """Kinds with a handler; a kind not listed is allowed unchecked. Built-in kinds by
    name, the kind table's as ``Kind.group`` (``PyTorchJob.kubeflow.org``,
    ``Job.batch.volcano.sh``: not a ``Job``)."""
    timeout_seconds: Annotated[int, Field(ge=1, le=30)] = 5
    """The webhook configuration's timeoutSeconds; the decision budget stays below it."""

    @field_validator("kinds", mode="before")
    @classmethod
    def _split_comma_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):  # a JSON list, as other list settings take
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError(f"not a JSON list: {value!r}") from None
        return [k.strip() for k in value.split(",") if k.strip()]


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubernetesSettings(_Model):
    """How the webhook reads the ResourceClaimTemplates/ResourceClaims a pod names (DRA)
    from the apiserver. In a cluster nothing needs setting: the pod's service account."""

    read_claims: bool = True
    """False: claimed devices are not counted online (a warning says so)."""
    api_url: str | None = None
    """The apiserver; None: in-cluster (``KUBERNETES_SERVICE_HOST``/``_PORT``), and
    claims are not read outside a cluster."""
    token_file: Path | None = SERVICE_ACCOUNT / "token"
    """Bearer token, re-read as the kubelet rotates it; ignored when the file is absent."""
    ca_file: Path | None = SERVICE_ACCOUNT / "ca.crt"
    client_cert_file: Path | None = None
    """A client certificate instead of a token (development, tests)."""
    client_key_file: Path | None = None
    request_timeout: Seconds = 1.0
    """One lookup; the review's own budget bounds them all."""
    claims_ttl: Seconds = 30.0
    """How long a claim read is reused (a missing one: at most 5 s)."""
    max_cached_claims: Annotated[int, Field(ge=1)] = 10_000


class CertificateSettings(_Model):
    """Self-managed serving certificates (the chart's default, ``certificates.mode:
    selfManaged``): the server keeps a CA and its serving certificate in one Secret, renews
    them before they expire, writes them to ``server.cert_file``/``key_file`` (which the
    TLS listener reloads) and keeps the caBundle of its ValidatingWebhookConfiguration.
    Several replicas: whoever updates the Secret first wins (resourceVersion), the others
    use what it wrote (webhook/serve/selfcerts.py)."""

    self_managed: bool = False
    namespace: str | None = None
    """Where the Secret is; None: the service account's namespace."""
    secret_name: str = "nodelimits-certs"  # noqa: S105 - a Secret's name, not a secret
    webhook_configuration: str | None = None
    """The ValidatingWebhookConfiguration whose caBundle is kept; None: none."""
    hosts: tuple[str, ...] = ()
    """The serving certificate's subjectAltNames (DNS names or IP addresses)."""
    duration: Seconds = 90 * 86400.0
    renew_before: Seconds = 30 * 86400.0
    ca_duration: Seconds = 5 * 365 * 86400.0
    ca_renew_before: Seconds = 365 * 86400.0
    """A new CA joins the caBundle this long before the old one expires."""
    propagation: Seconds = 600.0
    """A new CA is trusted (in the caBundle) this long before it signs the serving
    certificate; the old one stays trusted until it expires."""
    check_interval: Seconds = 60.0
    startup_timeout: Seconds = 60.0
    """How long the first sync may take before ``serve`` gives up (no certificate)."""

    @model_validator(mode="after")
    def _ordered(self) -> CertificateSettings:
        if self.self_managed and not self.hosts:
            raise ValueError("certificates.hosts: at least one name for the certificate")
        if self.renew_before >= self.duration:
            raise ValueError(
                f"certificates.renew_before ({self.renew_before:g}s) must be below "
                f"duration ({self.duration:g}s)"
            )
        if self.ca_renew_before >= self.ca_duration:
            raise ValueError(
                f"certificates.ca_renew_before ({self.ca_renew_before:g}s) must be below "
                f"ca_duration ({self.ca_duration:g}s)"
            )
        if self.ca_renew_before <= self.renew_before + self.propagation:
            raise ValueError(
                "certificates.ca_renew_before must exceed renew_before + propagation: the "
                "new CA must sign a serving certificate before the old CA's last one is due"
            )
        return self


class Settings(BaseSettings):
    """All of nodelimits' settings."""

    model_config = SettingsConfigDict(
        env_prefix="NODELIMITS_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
        yaml_file=None,
    )

    policy: PolicySettings = PolicySettings()
    platform: PlatformSettings = PlatformSettings()
    cache: CacheSettings = CacheSettings()
    server: ServerSettings = ServerSettings()
    admission: AdmissionSettings = AdmissionSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    certificates: CertificateSettings = CertificateSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @model_validator(mode="after")
    def _deadline_below_webhook_timeout(self) -> Settings:
        if self.platform.deadline >= self.admission.timeout_seconds:
            raise ValueError(
                f"platform.deadline ({self.platform.deadline}s) must be below "
                f"admission.timeout_seconds ({self.admission.timeout_seconds}s)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file sits below the environment so a Helm-rendered file can be
        # overridden per pod with env, as operators expect.
        if settings_cls.model_config.get("yaml_file"):
            return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)
        return init_settings, env_settings


def _describe(error: ErrorDetails) -> str:
    loc = [str(p) for p in error["loc"]]
    env = "NODELIMITS_" + "__".join(p.upper() for p in loc) if loc else "settings"
    return f"{env}: {error['msg']}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from arguments, env and the YAML file; raise :class:`ConfigError`.

    ``config_file`` (or ``$NODELIMITS_CONFIG_FILE``) is a YAML file with the same
    nested keys as the environment (``platform: {base_url: ...}``).
    """
    if config_file is None and os.environ.get(CONFIG_FILE_ENV):
        config_file = Path(os.environ[CONFIG_FILE_ENV])
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError([f"{CONFIG_FILE_ENV}: no such file: {config_file}"])
        settings_cls = type(
            "Settings",
            (Settings,),
            {"model_config": {**Settings.model_config, "yaml_file": config_file}},
        )
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors(include_url=False)]) from None
    except SettingsError as exc:  # a value a source could not parse; names field and source
        raise ConfigError([f"settings: {exc}"]) from None
    except (OSError, ValueError) as exc:  # YAML syntax, unreadable file
        raise ConfigError([f"{CONFIG_FILE_ENV}: {exc}"]) from None
