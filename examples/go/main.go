// Command credbroker-client is a minimal credbroker client: GetValidSubjectToken and
// GetDownstreamToken, with the rich error model (AIP-193).
//
// Generate the stubs from the repository's proto/ directory (see docs/clients.md):
//
//	protoc -I proto --go_out=$GEN --go-grpc_out=$GEN \
//	    credbroker/v1/broker.proto credbroker/v1/errors.proto
//
// The proto files' go_package is "credbroker/gen/credbroker/v1"; google.rpc.ErrorInfo and
// RetryInfo come from google.golang.org/genproto/googleapis/rpc/errdetails.
//
// Without -downstream it gets the user's own access token (GetValidSubjectToken); with it, a token
// for that configured downstream API, exchanged from the user's token (GetDownstreamToken: RFC 8693
// token exchange or Entra on-behalf-of).
//
// A caller configured with an API key passes it in the environment: CREDBROKER_API_KEY.
//
// It prints one JSON line and exits with 0 (a token, printed as its SHA-256 fingerprint: a bearer
// token never belongs in output or logs), 2 (REAUTH_REQUIRED: send the user to log in again; the
// cause says why), 3 (a retryable error persisted after the retries), 4 (EXCHANGE_REJECTED: the
// IdP refused the exchange; idpError is the OAuth error code; configuration or consent, do not
// retry) or 1 (anything else, such as PERMISSION_DENIED: this caller may not use the RPC, provider
// or downstream).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	credbrokerv1 "credbroker/gen/credbroker/v1"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const errorDomain = "credbroker.v1"

// Reasons and causes are enums in errors.proto whose value names equal the wire strings.
var (
	reauthRequired    = credbrokerv1.ErrorReason_REAUTH_REQUIRED.String()
	exchangeRejected  = credbrokerv1.ErrorReason_EXCHANGE_REJECTED.String()
	refreshInProgress = credbrokerv1.ErrorReason_REFRESH_IN_PROGRESS.String()
	retryableReasons  = map[string]bool{
		credbrokerv1.ErrorReason_IDP_UNAVAILABLE.String():   true,
		credbrokerv1.ErrorReason_STORE_UNAVAILABLE.String(): true,
		credbrokerv1.ErrorReason_SHUTTING_DOWN.String():     true,
		refreshInProgress: true,
	}
)

// brokerError is a credbroker error decoded from the google.rpc.Status trailer.
type brokerError struct {
	Code       codes.Code
	Message    string
	Reason     string
	Metadata   map[string]string
	RetryDelay time.Duration // zero when the error carries no RetryInfo
}

// decodeError reads the google.rpc.Status details: one ErrorInfo, and RetryInfo when retryable.
func decodeError(err error) brokerError {
	st, _ := status.FromError(err)
	decoded := brokerError{Code: st.Code(), Message: st.Message()}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == errorDomain {
				decoded.Reason = d.GetReason()
				decoded.Metadata = d.GetMetadata()
			}
		case *errdetails.RetryInfo:
			decoded.RetryDelay = d.GetRetryDelay().AsDuration()
		}
	}
	return decoded
}

// call runs a unary RPC with a 5 s deadline, retrying retryable reasons after their RetryInfo
// delay; it returns the response, or the decoded error once it is not retryable or attempts run out.
func call[Res any](attempts int, rpc func(context.Context) (Res, error)) (Res, *brokerError) {
	base := context.Background()
	// A caller identified by an API key (callers[].api_key_sha256) sends it as a bearer credential
	// (RFC 6750 §2.1); the broker accepts one only over TLS unless it runs with insecure: true.
	if key := os.Getenv("CREDBROKER_API_KEY"); key != "" {
		base = metadata.AppendToOutgoingContext(base, "authorization", "Bearer "+key)
	}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(base, 5*time.Second)
		res, err := rpc(ctx)
		cancel()
		if err == nil {
			return res, nil
		}
		decoded := decodeError(err)
		if !retryableReasons[decoded.Reason] || attempt == attempts {
			return res, &decoded
		}
		// REFRESH_IN_PROGRESS carries no RetryInfo: retry soon.
		delay := decoded.RetryDelay
		if delay == 0 {
			delay = 200 * time.Millisecond
		}
		if delay > 5*time.Second {
			delay = 5 * time.Second
		}
		time.Sleep(delay)
	}
}

// token is what both responses carry.
type token interface {
	GetAccessToken() string
	GetTokenType() string
	GetIssuedTokenType() string
	GetExpiresAt() *timestamppb.Timestamp
	GetScopes() []string
	GetDegraded() bool
}

// canonical names a status code as the gRPC spec does (FAILED_PRECONDITION), like other languages.
func canonical(c codes.Code) string {
	return code.Code(c).String()
}

func printJSON(v map[string]any) {
	out, _ := json.Marshal(v)
	fmt.Println(string(out))
}

func main() {
	target := flag.String("target", "localhost:50051", "broker address")
	userID := flag.String("user-id", "", "the user whose token to get (required)")
	provider := flag.String("provider", "", "provider id; may be empty with one provider configured")
	downstream := flag.String("downstream", "", "a downstream id: get a token for that API")
	minValidFor := flag.Duration("min-valid-for", 60*time.Second, "how long the token must stay valid")
	attempts := flag.Int("attempts", 3, "tries for retryable errors")
	flag.Parse()
	if *userID == "" {
		fmt.Fprintln(os.Stderr, "-user-id is required")
		os.Exit(1)
	}

	// Production: grpc.WithTransportCredentials(credentials.NewTLS(...)) for (m)TLS.
	conn, err := grpc.Dial(*target, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := credbrokerv1.NewCredentialBrokerClient(conn)

	var (
		tok    token
		source string
		bErr   *brokerError
	)
	if *downstream != "" {
		var res *credbrokerv1.GetDownstreamTokenResponse
		res, bErr = call(*attempts, func(ctx context.Context) (*credbrokerv1.GetDownstreamTokenResponse, error) {
			return client.GetDownstreamToken(ctx, &credbrokerv1.GetDownstreamTokenRequest{
				UserId:      *userID,
				Provider:    *provider,
				Downstream:  *downstream,
				MinValidFor: durationpb.New(*minValidFor),
			})
		})
		tok, source = res, res.GetSource().String()
	} else {
		var res *credbrokerv1.GetValidSubjectTokenResponse
		res, bErr = call(*attempts, func(ctx context.Context) (*credbrokerv1.GetValidSubjectTokenResponse, error) {
			return client.GetValidSubjectToken(ctx, &credbrokerv1.GetValidSubjectTokenRequest{
				UserId:      *userID,
				Provider:    *provider,
				MinValidFor: durationpb.New(*minValidFor),
			})
		})
		tok, source = res, res.GetSource().String()
	}

	switch {
	case bErr == nil:
		// Use tok.GetAccessToken() now; never cache it past its expiry. Degraded: the IdP was
		// unreachable and the token has less left than asked for; use it now, don't keep it.
		sum := sha256.Sum256([]byte(tok.GetAccessToken()))
		printJSON(map[string]any{
			"outcome":         "token",
			"tokenSha256":     hex.EncodeToString(sum[:]),
			"tokenType":       tok.GetTokenType(),
			"issuedTokenType": tok.GetIssuedTokenType(),
			"expiresAt":       tok.GetExpiresAt().AsTime().UTC().Format(time.RFC3339Nano),
			"source":          source,
			"scopes":          tok.GetScopes(),
			"degraded":        tok.GetDegraded(),
		})
	case bErr.Reason == reauthRequired:
		// The user must log in again (for a downstream token too: it is exchanged from the user's
		// token). The cause tells the UI what to say.
		cause := bErr.Metadata["cause"]
		_, known := credbrokerv1.ReauthCause_value[cause]
		printJSON(map[string]any{
			"outcome":      "reauth",
			"code":         canonical(bErr.Code),
			"reason":       bErr.Reason,
			"cause":        cause,
			"causeIsKnown": known,
			"provider":     bErr.Metadata["provider"],
			"userId":       bErr.Metadata["userId"],
		})
		os.Exit(2)
	case bErr.Reason == exchangeRejected:
		// The IdP refused the exchange: the downstream is not set up for this client at the IdP,
		// the user has not consented, a scope is not allowed... An operator must fix it; retrying
		// or a new login will not. The metadata carries the OAuth error code, never the IdP's text.
		printJSON(map[string]any{
			"outcome":  "exchange_rejected",
			"code":     canonical(bErr.Code),
			"reason":   bErr.Reason,
			"idpError": bErr.Metadata["idpError"],
		})
		os.Exit(4)
	case bErr.Code == codes.PermissionDenied:
		// This caller may not call the RPC, use the provider or get this downstream's token
		// (callers[].allow / providers / downstreams in the broker's configuration). Do not retry.
		printJSON(map[string]any{
			"outcome": "forbidden",
			"code":    canonical(bErr.Code),
			"reason":  bErr.Reason,
			"cause":   bErr.Metadata["cause"],
		})
		os.Exit(1)
	default:
		outcome, exit := "error", 1
		if retryableReasons[bErr.Reason] {
			outcome, exit = "retryable", 3
		}
		printJSON(map[string]any{
			"outcome":           outcome,
			"code":              canonical(bErr.Code),
			"reason":            bErr.Reason,
			"message":           bErr.Message,
			"retryDelaySeconds": bErr.RetryDelay.Seconds(),
		})
		os.Exit(exit)
	}
}
