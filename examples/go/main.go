// Command credbroker-client is a minimal credbroker client: GetValidSubjectToken with the rich
// error model (AIP-193).
//
// Generate the stubs from the repository's proto/ directory (see docs/clients.md):
//
//	protoc -I proto --go_out=$GEN --go-grpc_out=$GEN \
//	    credbroker/v1/broker.proto credbroker/v1/errors.proto
//
// The proto files' go_package is "credbroker/gen/credbroker/v1"; google.rpc.ErrorInfo and
// RetryInfo come from google.golang.org/genproto/googleapis/rpc/errdetails.
//
// It prints one JSON line and exits with 0 (a token, printed as its SHA-256 fingerprint: a bearer
// token never belongs in output or logs), 2 (REAUTH_REQUIRED: send the user to log in again; the
// cause says why), 3 (a retryable error persisted after the retries) or 1 (anything else).
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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

const errorDomain = "credbroker.v1"

// Reasons and causes are enums in errors.proto whose value names equal the wire strings.
var (
	reauthRequired    = credbrokerv1.ErrorReason_REAUTH_REQUIRED.String()
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

// getToken calls GetValidSubjectToken, retrying retryable reasons after their RetryInfo delay.
func getToken(client credbrokerv1.CredentialBrokerClient, req *credbrokerv1.GetValidSubjectTokenRequest, attempts int) (*credbrokerv1.GetValidSubjectTokenResponse, *brokerError) {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := client.GetValidSubjectToken(ctx, req)
		cancel()
		if err == nil {
			return res, nil
		}
		decoded := decodeError(err)
		if !retryableReasons[decoded.Reason] || attempt == attempts {
			return nil, &decoded
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

	res, bErr := getToken(credbrokerv1.NewCredentialBrokerClient(conn), &credbrokerv1.GetValidSubjectTokenRequest{
		UserId:      *userID,
		Provider:    *provider,
		MinValidFor: durationpb.New(*minValidFor),
	}, *attempts)

	switch {
	case bErr == nil:
		// Use res.AccessToken now; never cache it past res.ExpiresAt.
		sum := sha256.Sum256([]byte(res.GetAccessToken()))
		printJSON(map[string]any{
			"outcome":     "token",
			"tokenSha256": hex.EncodeToString(sum[:]),
			"tokenType":   res.GetTokenType(),
			"expiresAt":   res.GetExpiresAt().AsTime().UTC().Format(time.RFC3339Nano),
			"source":      res.GetSource().String(),
			"scopes":      res.GetScopes(),
		})
	case bErr.Reason == reauthRequired:
		// The user must log in again. The cause tells the UI what to say.
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
