package secure

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"conclave/internal/e2ee"
)

// API calls of docs/api.md that a native participant needs to be
// certified: the organisation key, a login, a credential.

// FetchOrg gets the organisation's E2EE CA (GET /api/e2ee/org). base is
// the server's web root, https://host[:port][/prefix].
func FetchOrg(ctx context.Context, hc *http.Client, base string) (Org, error) {
	var out struct{ OrgID, Name, PublicKey, LogKey string }
	if _, err := call(ctx, hc, "GET", base+"/api/e2ee/org", "", nil, &out); err != nil {
		return Org{}, fmt.Errorf("get the organisation key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(out.PublicKey)
	if err != nil {
		return Org{}, errors.New("get the organisation key: the key is not base64")
	}
	org := Org{ID: out.OrgID, Name: out.Name, PublicKey: key, LogKey: out.LogKey}
	if _, err := org.Key(); err != nil {
		return Org{}, fmt.Errorf("get the organisation key: %w", err)
	}
	return org, nil
}

// Login signs in (POST /api/login); hc must have a cookie jar, which then
// holds the session cookie. It returns the CSRF token.
func Login(ctx context.Context, hc *http.Client, base, username, password string) (string, error) {
	if hc.Jar == nil {
		return "", errors.New("login needs an HTTP client with a cookie jar")
	}
	var out struct{ CSRF string }
	st, err := call(ctx, hc, "POST", base+"/api/login", "", map[string]string{"username": username, "password": password}, &out)
	switch {
	case st == http.StatusUnauthorized:
		return "", errors.New("login refused: wrong username or password (or the account is disabled)")
	case st == http.StatusTooManyRequests:
		return "", errors.New("login refused: too many failures for this account; wait and try again")
	case err != nil:
		return "", fmt.Errorf("login: %w", err)
	}
	return out.CSRF, nil
}

// RequestCredential asks the organisation's RA to certify the device key
// (POST /api/e2ee/credential), after Login as account with the same
// client: it gets a challenge and proves it holds the device key
// (docs/e2ee.md, section 7).
func RequestCredential(ctx context.Context, hc *http.Client, base, csrf string, device *ecdsa.PrivateKey, orgID, account string) ([]byte, time.Time, error) {
	pub, err := e2ee.MarshalPublicKey(&device.PublicKey)
	if err != nil {
		return nil, time.Time{}, err
	}
	var ch struct{ Challenge string }
	if _, err := call(ctx, hc, "POST", base+"/api/e2ee/challenge", csrf, map[string]string{}, &ch); err != nil {
		return nil, time.Time{}, fmt.Errorf("get a device credential: %w", err)
	}
	chal, err := base64.StdEncoding.DecodeString(ch.Challenge)
	if err != nil {
		return nil, time.Time{}, errors.New("get a device credential: the challenge is not base64")
	}
	sig, err := e2ee.ProvePossession(device, orgID, account, chal)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("get a device credential: %w", err)
	}
	var out struct {
		Credential string
		NotAfter   time.Time
	}
	if _, err := call(ctx, hc, "POST", base+"/api/e2ee/credential", csrf,
		map[string]string{"devicePublicKey": base64.StdEncoding.EncodeToString(pub), "challenge": ch.Challenge,
			"signature": base64.StdEncoding.EncodeToString(sig)}, &out); err != nil {
		return nil, time.Time{}, fmt.Errorf("get a device credential: %w", err)
	}
	cred, err := base64.StdEncoding.DecodeString(out.Credential)
	if err != nil {
		return nil, time.Time{}, errors.New("get a device credential: the credential is not base64")
	}
	return cred, out.NotAfter, nil
}

// call makes a JSON request and decodes a 2xx answer into out. Errors
// carry the server's error code, never the request body.
func call(ctx context.Context, hc *http.Client, method, url, csrf string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(data, &e)
		msg := strings.TrimSpace(e.Error.Message)
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return resp.StatusCode, fmt.Errorf("%s (HTTP %d %s)", msg, resp.StatusCode, e.Error.Code)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("invalid answer: %w", err)
	}
	return resp.StatusCode, nil
}
