"""The dbt profile cosmos gives the DAG's dbt tasks.

``RECPIPE_BQ_CREDENTIALS=adc`` (the default) and DuckDB: ``dbt_project/profiles.yml`` (BigQuery
through Application Default Credentials). ``RECPIPE_BQ_CREDENTIALS=airflow`` on BigQuery: a
cosmos profile mapping of the Airflow connection ``google_cloud_default``, the connection the
Python stages read (recpipe/warehouse.py), chosen in the same order: a service account key in
the extra ``keyfile_dict``, else a key file ``key_path``, else ADC. The connection is read when
a dbt task runs, not when the DAG is parsed (the dag-processor needs no secrets).
"""

from __future__ import annotations

from typing import Any

from cosmos import ProfileConfig
from cosmos.profiles import (
    GoogleCloudOauthProfileMapping,
    GoogleCloudServiceAccountDictProfileMapping,
    GoogleCloudServiceAccountFileProfileMapping,
)
from cosmos.profiles.base import BaseProfileMapping

from recpipe.settings import DBT_PROJECT_DIR, Settings

PROFILE_NAME = "recpipe"
# The order recpipe.warehouse._airflow_connection_credentials reads the connection in.
_MAPPINGS = (
    GoogleCloudServiceAccountDictProfileMapping,
    GoogleCloudServiceAccountFileProfileMapping,
    GoogleCloudOauthProfileMapping,
)


class AirflowConnectionProfileMapping(BaseProfileMapping):
    """A dbt BigQuery profile from an Airflow Google Cloud connection: delegates to the first
    cosmos mapping (service account dict, key file, oauth/ADC) that claims the connection,
    looked up only when a profile is actually written (at task run time)."""

    airflow_connection_type = "google_cloud_platform"
    dbt_profile_type = "bigquery"
    dbt_profile_method = None
    required_fields = ["project", "dataset"]

    def __init__(self, conn_id: str, profile_args: dict[str, Any] | None = None) -> None:
        super().__init__(conn_id, profile_args)
        self._chosen: BaseProfileMapping | None = None

    @property
    def chosen(self) -> BaseProfileMapping:
        """The cosmos mapping that claims the connection (reads the connection once)."""
        if self._chosen is None:
            for mapping_class in _MAPPINGS:
                mapping = mapping_class(self.conn_id, dict(self.profile_args))
                if mapping.can_claim_connection():
                    self._chosen = mapping
                    break
            else:
                raise ValueError(
                    f"the Airflow connection {self.conn_id} is not a Google Cloud connection "
                    "with a project (set RECPIPE_BQ_PROJECT or the connection's extra project)"
                )
        return self._chosen

    @property
    def profile(self) -> dict[str, Any]:
        return self.chosen.profile

    @property
    def env_vars(self) -> dict[str, str]:
        return self.chosen.env_vars


def bigquery_profile_args(settings: Settings) -> dict[str, Any]:
    """The dbt-bigquery target fields recpipe sets itself (as in profiles.yml), whatever the
    credentials: dataset, location, threads, retries, the bytes cap and, for the local
    emulator, its endpoint. ``project`` only when RECPIPE_BQ_PROJECT is set (else the
    connection's extra ``project``, as for the Python stages)."""
    emulator = bool(settings.bq_api_endpoint)
    args: dict[str, Any] = {
        "dataset": "analytics",
        "location": settings.bq_location,
        "threads": 1 if emulator else 4,
        "job_retries": 0 if emulator else 1,
    }
    if settings.bq_project:
        args["project"] = settings.bq_project
    if settings.bq_maximum_bytes_billed:
        args["maximum_bytes_billed"] = settings.bq_maximum_bytes_billed
    if emulator:
        args["api_endpoint"] = settings.bq_api_endpoint
        args["job_execution_timeout_seconds"] = 300
    return args


def profile_config(settings: Settings) -> ProfileConfig:
    """The cosmos ProfileConfig of the DAG's dbt tasks for these settings."""
    if settings.warehouse == "bigquery" and settings.bq_credentials == "airflow":
        from recpipe.warehouse import AIRFLOW_CONNECTION_ID

        return ProfileConfig(
            profile_name=PROFILE_NAME,
            target_name=settings.dbt_target,
            profile_mapping=AirflowConnectionProfileMapping(
                AIRFLOW_CONNECTION_ID, bigquery_profile_args(settings)
            ),
        )
    return ProfileConfig(
        profile_name=PROFILE_NAME,
        target_name=settings.dbt_target,
        profiles_yml_filepath=DBT_PROJECT_DIR / "profiles.yml",
    )
