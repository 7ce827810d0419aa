"""versitygw as the lab runs it: buckets and objects through boto3 with the run's own keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from experiment_lab.s3 import REGION, S3Server


def test_objects_round_trip_and_other_keys_are_refused(
    tmp_path: Path, lab_binary: Callable[[str], Path]
) -> None:
    server = S3Server(lab_binary("versitygw"), tmp_path, "127.0.0.1")
    server.start()
    try:
        server.create_bucket("mlflow")
        client = server.client()
        client.put_object(Bucket="mlflow", Key="1/abc/artifacts/model.pkl", Body=b"weights")
        client.put_object(Bucket="mlflow", Key="2/def/artifacts/notes.txt", Body=b"notes")
        body = client.get_object(Bucket="mlflow", Key="1/abc/artifacts/model.pkl")["Body"]
        assert body.read() == b"weights"
        assert server.object_keys("mlflow", "1/") == ["1/abc/artifacts/model.pkl"]
        assert len(server.object_keys("mlflow")) == 2

        stranger = boto3.client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.access_key,
            aws_secret_access_key="not-the-secret-key",
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )
        with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
            stranger.list_objects_v2(Bucket="mlflow")
    finally:
        server.stop()
