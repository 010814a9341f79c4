#!/usr/bin/env python3
"""Minimal credbroker client: GetValidSubjectToken and GetDownstreamToken, with the rich error model (AIP-193).

Generate the stubs from the repository's proto/ directory first (see docs/clients.md):

    protoc -I proto --python_out=gen --grpc_python_out=gen \
        --plugin=protoc-gen-grpc_python=$(command -v grpc_python_plugin) \
        credbroker/v1/broker.proto credbroker/v1/errors.proto \
        google/rpc/status.proto google/rpc/error_details.proto
    PYTHONPATH=gen python3 examples/python/client.py --target localhost:50051 --user-id alice
    PYTHONPATH=gen python3 examples/python/client.py --target localhost:50051 --user-id alice --downstream orders

A caller configured with an API key passes it in the environment: CREDBROKER_API_KEY.

Without --downstream it gets the user's own access token (GetValidSubjectToken); with it, a token
for that configured downstream API, exchanged from the user's token (GetDownstreamToken: RFC 8693
token exchange or Entra on-behalf-of). Prints one JSON line and exits with
  0  a token (printed as its SHA-256 fingerprint: a bearer token never belongs in output or logs)
  2  REAUTH_REQUIRED: send the user to log in again; "cause" says why (NO_TOKEN, REFRESH_REJECTED, ...)
  3  a retryable error persisted after the retries (IDP_UNAVAILABLE, STORE_UNAVAILABLE, ...)
  4  EXCHANGE_REJECTED: the IdP refused the exchange; "idpError" is the OAuth error code
     (invalid_target, invalid_scope, invalid_grant). Configuration or consent: do not retry
  1  anything else (bad request; PERMISSION_DENIED: this caller may not use the RPC, provider or
     downstream, fix the broker's callers policy; ...)

It needs only grpcio and protobuf: the google.rpc.Status trailer is decoded with the generated
status_pb2 / error_details_pb2, so the optional grpcio-status package is not required.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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
EXCHANGE_REJECTED = errors_pb2.ErrorReason.Name(errors_pb2.EXCHANGE_REJECTED)
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


def call(rpc, request, attempts: int = 3, deadline_s: float = 5.0):
    """Calls a unary RPC; returns the response, or the decoded error once it is not retryable or
    attempts run out."""
    # A caller identified by an API key (callers[].api_key_sha256) sends it as a bearer credential
    # (RFC 6750 §2.1); the broker accepts one only over TLS unless it runs with insecure: true.
    api_key = os.environ.get("CREDBROKER_API_KEY", "")
    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else None
    for attempt in range(1, attempts + 1):
        try:
            return rpc(request, timeout=deadline_s, metadata=metadata)
        except grpc.RpcError as err:
            decoded = decode_error(err)
            if decoded.reason not in RETRYABLE_REASONS or attempt == attempts:
                return decoded
            # RetryInfo says how long to back off; REFRESH_IN_PROGRESS has none: retry soon.
            time.sleep(min(decoded.retry_delay_s or 0.2, 5.0))
    raise AssertionError("unreachable")


def get_token(
    stub: broker_pb2_grpc.CredentialBrokerStub, user_id: str, provider: str, min_valid_for_s: int, attempts: int = 3
) -> broker_pb2.GetValidSubjectTokenResponse | BrokerError:
    """The user's own access token, valid for at least min_valid_for_s."""
    request = broker_pb2.GetValidSubjectTokenRequest(
        user_id=user_id, provider=provider, min_valid_for=duration_pb2.Duration(seconds=min_valid_for_s)
    )
    return call(stub.GetValidSubjectToken, request, attempts)


def get_downstream_token(
    stub: broker_pb2_grpc.CredentialBrokerStub,
    user_id: str,
    provider: str,
    downstream: str,
    min_valid_for_s: int,
    attempts: int = 3,
) -> broker_pb2.GetDownstreamTokenResponse | BrokerError:
    """A token for the downstream API `downstream` (an id of the provider's downstreams[]), which
    the broker exchanges from the user's token and caches."""
    request = broker_pb2.GetDownstreamTokenRequest(
        user_id=user_id,
        provider=provider,
        downstream=downstream,
        min_valid_for=duration_pb2.Duration(seconds=min_valid_for_s),
    )
    return call(stub.GetDownstreamToken, request, attempts)


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:50051")
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--provider", default="", help="may be empty with one provider configured")
    parser.add_argument("--downstream", default="", help="a downstream id: get a token for that API")
    parser.add_argument("--min-valid-for", type=int, default=60, help="seconds the token must stay valid")
    parser.add_argument("--attempts", type=int, default=3, help="tries for retryable errors")
    args = parser.parse_args(argv)

    # Production: grpc.secure_channel(target, grpc.ssl_channel_credentials(...)) for (m)TLS.
    with grpc.insecure_channel(args.target) as channel:
        stub = broker_pb2_grpc.CredentialBrokerStub(channel)
        if args.downstream:
            result = get_downstream_token(
                stub, args.user_id, args.provider, args.downstream, args.min_valid_for, args.attempts
            )
        else:
            result = get_token(stub, args.user_id, args.provider, args.min_valid_for, args.attempts)

    if not isinstance(result, BrokerError):
        # Use result.access_token now; never cache it past result.expires_at. degraded: the IdP
        # was unreachable and the token has less left than asked for; use it now, don't keep it.
        sources = broker_pb2.DownstreamTokenSource if args.downstream else broker_pb2.TokenSource
        print(json.dumps({
            "outcome": "token",
            "tokenSha256": fingerprint(result.access_token),
            "tokenType": result.token_type,
            "issuedTokenType": result.issued_token_type,
            "expiresAt": result.expires_at.ToJsonString(),
            "source": sources.Name(result.source),
            "scopes": list(result.scopes),
            "degraded": result.degraded,
        }))
        return 0
    if result.reason == REAUTH_REQUIRED:
        # The user must log in again (for a downstream token too: it is exchanged from the user's
        # token). The cause tells the UI what to say.
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
    if result.reason == EXCHANGE_REJECTED:
        # The IdP refused the exchange: the downstream is not set up for this client at the IdP,
        # the user has not consented, a scope is not allowed... An operator must fix it; retrying
        # or a new login will not. The metadata carries the OAuth error code, never the IdP's text.
        print(json.dumps({
            "outcome": "exchange_rejected",
            "code": result.code.name,
            "reason": result.reason,
            "idpError": result.metadata.get("idpError", ""),
        }))
        return 4
    if result.code == grpc.StatusCode.PERMISSION_DENIED:
        # This caller may not call the RPC, use the provider or get this downstream's token
        # (callers[].allow / providers / downstreams in the broker's configuration). Do not retry.
        print(json.dumps({
            "outcome": "forbidden",
            "code": result.code.name,
            "reason": result.reason,
            "cause": result.metadata.get("cause", ""),
        }))
        return 1
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
