package authn_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"conclave/internal/authn"
	"conclave/internal/testutil/fakeclock"
	"conclave/internal/testutil/oidcop"
)

const otherRedirect = "http://127.0.0.1:1/callback"

// idToken signs in at the provider as User1 for client and returns the raw
// ID token it issues.
func idToken(t *testing.T, op *oidcop.OP, client, secret string) string {
	t.Helper()
	ctx := context.Background()
	cfg := &oauth2.Config{ClientID: client, ClientSecret: secret, RedirectURL: otherRedirect, Scopes: []string{"openid", "profile"},
		Endpoint: oauth2.Endpoint{AuthURL: op.Issuer + "/auth", TokenURL: op.Issuer + "/oauth/token"}}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	back, err := oidcop.SignIn(&http.Client{Jar: jar}, cfg.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)),
		oidcop.User1, oidcop.Password, otherRedirect)
	if err != nil {
		t.Fatalf("sign in at the provider: %v", err)
	}
	tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no ID token")
	}
	return raw
}

// TestIDTokenChecks: against a real OpenID provider, an ID token made for
// Conclave verifies; one made for another client (wrong audience) is
// refused; one past its expiry (the provider gives one hour) is refused;
// a provider whose issuer differs from the configured one is refused.
func TestIDTokenChecks(t *testing.T) {
	op := oidcop.Start(t, nil,
		oidcop.Client{ID: "conclave", Secret: "conclave-secret", RedirectURIs: []string{otherRedirect}},
		oidcop.Client{ID: "other", Secret: "other-secret", RedirectURIs: []string{otherRedirect}})
	ctx := context.Background()
	clk := fakeclock.New(time.Now())
	sso := authn.NewSSO(clk)
	s := authn.DefaultOIDC()
	s.Enabled, s.Issuer, s.ClientID, s.ClientSecret = true, op.Issuer, "conclave", "conclave-secret"

	ours := idToken(t, op, "conclave", "conclave-secret")
	if _, err := sso.VerifyIDToken(ctx, s, ours); err != nil {
		t.Fatalf("Conclave's own ID token: %v", err)
	}
	theirs := idToken(t, op, "other", "other-secret")
	if _, err := sso.VerifyIDToken(ctx, s, theirs); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("a token for another client: %v", err)
	}
	clk.Advance(61 * time.Minute)
	if _, err := sso.VerifyIDToken(ctx, s, ours); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired token: %v", err)
	}

	wrong := s
	wrong.Issuer = strings.Replace(op.Issuer, "127.0.0.1", "localhost", 1)
	if _, err := authn.NewSSO(nil).VerifyIDToken(ctx, wrong, ours); err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("a provider with another issuer: %v", err)
	}
	if _, err := authn.NewSSO(nil).Start(ctx, wrong, "https://127.0.0.1/api/oidc/callback", "/"); err == nil {
		t.Fatal("a sign-in started at a provider with another issuer")
	}
}
