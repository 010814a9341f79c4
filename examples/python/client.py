#!/usr/bin/env python3
"""Minimal credbroker client: GetValidSubjectToken with the rich error model (AIP-193).

Generate the stubs from the repository's proto/ directory first (see README.md beside this file):

    protoc -I proto --python_out=gen --grpc_python_out=gen \
        --plugin=protoc-gen-grpc_python=$(command -v grpc_python_plugin) \
        credbroker/v1/broker.proto credbroker/v1/errors.proto \
        google/rpc/status.proto google/rpc/error_details.proto
    PYTHONPATH=gen python3 examples/python/client.py --target localhost:50051 --user-id alice

Prints one JSON line and exits with
  0  a token (printed as its SHA-256 fingerprint: a bearer token never belongs in output or logs)
  2  REAUTH_REQUIRED: send the user to log in again; "cause" says why (NO_TOKEN, REFRESH_REJECTED, ...)
  3  a retryable error persisted after the retries (IDP_UNAVAILABLE, STORE_UNAVAILABLE, ...)
  1  anything else (bad request, caller not allowed, ...)

It needs only grpcio and protobuf: the google.rpc.Status trailer is decoded with the generated
status_pb2 / error_details_pb2, so the optional grpcio-status package is not required.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2

from credbroker.v1 import broker_pb2, broker_pb2_grpc, errors_pb2
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_DOMAIN = "credbroker.v1"

# Reasons and causes are enums in errors.proto whose value names equal the wire strings.
REAUTH_REQUIRED = errors_pb2.ErrorReason.Name(errors_pb2.REAUTH_REQUIRED)
REFRESH_IN_PROGRESS = errors_pb2.ErrorReason.Name(errors_pb2.REFRESH_IN_PROGRESS)
RETRYABLE_REASONS = {
    errors_pb2.ErrorReason.Name(errors_pb2.IDP_UNAVAILABLE),
    errors_pb2.ErrorReason.Name(errors_pb2.STORE_UNAVAILABLE),
    errors_pb2.ErrorReason.Name(errors_pb2.SHUTTING_DOWN),
    REFRESH_IN_PROGRESS,
}


@dataclass
class BrokerError:
    """A credbroker error decoded from the google.rpc.Status trailer."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry_delay_s: float | None = None


def decode_error(err: grpc.RpcError) -> BrokerError:
    """Decodes grpc-status-details-bin: a google.rpc.Status with one ErrorInfo (+ RetryInfo)."""
    decoded = BrokerError(code=err.code(), message=err.details() or "")
    raw = next((v for k, v in (err.trailing_metadata() or ()) if k == STATUS_DETAILS_KEY), None)
    if raw is None:  # not from credbroker (a proxy, a connection failure): no rich details
        return decoded
    status = status_pb2.Status.FromString(raw)
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if info.domain == ERROR_DOMAIN:
                decoded.reason = info.reason
                decoded.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            decoded.retry_delay_s = retry.retry_delay.ToTimedelta().total_seconds()
    return decoded


def get_token(
    stub: broker_pb2_grpc.CredentialBrokerStub,
    user_id: str,
    provider: str,
    min_valid_for_s: int,
    attempts: int = 3,
    deadline_s: float = 5.0,
) -> broker_pb2.GetValidSubjectTokenResponse | BrokerError:
    """Returns the response, or the decoded error once it is not retryable or attempts run out."""
    request = broker_pb2.GetValidSubjectTokenRequest(
        user_id=user_id,
        provider=provider,
        min_valid_for=duration_pb2.Duration(seconds=min_valid_for_s),
    )
    for attempt in range(1, attempts + 1):
        try:
            return stub.GetValidSubjectToken(request, timeout=deadline_s)
        except grpc.RpcError as err:
            decoded = decode_error(err)
            if decoded.reason not in RETRYABLE_REASONS or attempt == attempts:
                return decoded
            # RetryInfo says how long to back off; REFRESH_IN_PROGRESS has none: retry soon.
            time.sleep(min(decoded.retry_delay_s or 0.2, 5.0))
    raise AssertionError("unreachable")


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--provider", default="", help="may be empty with one provider configured")
    parser.add_argument("--min-valid-for", type=int, default=60, help="seconds the token must stay valid")
    parser.add_argument("--attempts", type=int, default=3, help="tries for retryable errors")
    args = parser.parse_args(argv)

    # Production: grpc.secure_channel(target, grpc.ssl_channel_credentials(...)) for (m)TLS.
    with grpc.insecure_channel(args.target) as channel:
        result = get_token(
            broker_pb2_grpc.CredentialBrokerStub(channel),
            args.user_id,
            args.provider,
            args.min_valid_for,
            attempts=args.attempts,
        )

    if isinstance(result, broker_pb2.GetValidSubjectTokenResponse):
        # Use result.access_token now; never cache it past result.expires_at.
        print(json.dumps({
            "outcome": "token",
            "tokenSha256": fingerprint(result.access_token),
            "tokenType": result.token_type,
            "expiresAt": result.expires_at.ToJsonString(),
            "source": broker_pb2.TokenSource.Name(result.source),
            "scopes": list(result.scopes),
        }))
        return 0
    if result.reason == REAUTH_REQUIRED:
        # The user must log in again. The cause tells the UI what to say.
        cause = result.metadata.get("cause", "")
        print(json.dumps({
            "outcome": "reauth",
            "code": result.code.name,
            "reason": result.reason,
            "cause": cause,
            "causeIsKnown": cause in errors_pb2.ReauthCause.keys(),
            "provider": result.metadata.get("provider", ""),
            "userId": result.metadata.get("userId", ""),
        }))
        return 2
    print(json.dumps({
        "outcome": "retryable" if result.reason in RETRYABLE_REASONS else "error",
        "code": result.code.name,
        "reason": result.reason,
        "message": result.message,
        "retryDelaySeconds": result.retry_delay_s,
    }))
    return 3 if result.reason in RETRYABLE_REASONS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
