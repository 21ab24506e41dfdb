package authn

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"conclave/internal/clock"
)

// loginTTL is how long a started single sign-on may take.
const loginTTL = 10 * time.Minute

// maxPending bounds the single sign-on logins started and not finished,
// so that a client cannot fill the memory by starting many.
const maxPending = 10000

// ErrSSOState refuses a callback with an unknown, used or expired state.
var ErrSSOState = errors.New("this sign-in link is unknown, used or expired; start the sign-in again")

// SSO runs OpenID Connect sign-ins: the authorization code flow with PKCE
// (S256), a nonce, and an ID token checked for issuer, audience, expiry and
// signature.
type SSO struct {
	clock clock.Clock
	// Client is used to reach the provider; nil means a client with a
	// 10-second timeout.
	Client *http.Client

	mu       sync.Mutex
	pending  map[string]pendingLogin // by state
	provider *oidc.Provider
	provFor  string // issuer of provider
}

type pendingLogin struct {
	verifier, nonce string
	returnTo        string
	expires         time.Time
}

// NewSSO returns an SSO dating tokens by clk (nil means clock.System).
func NewSSO(clk clock.Clock) *SSO {
	return &SSO{clock: clock.Or(clk), pending: map[string]pendingLogin{}}
}

func (o *SSO) ctx(ctx context.Context) context.Context {
	c := o.Client
	if c == nil {
		c = &http.Client{Timeout: 10 * time.Second}
	}
	return oidc.ClientContext(ctx, c)
}

// providerFor returns the provider of s.Issuer, discovering it on first
// use (and again when the issuer changes).
func (o *SSO) providerFor(ctx context.Context, s OIDCSettings) (*oidc.Provider, error) {
	o.mu.Lock()
	p, for_ := o.provider, o.provFor
	o.mu.Unlock()
	if p != nil && for_ == s.Issuer {
		return p, nil
	}
	p, err := oidc.NewProvider(o.ctx(ctx), s.Issuer)
	if err != nil {
		return nil, fmt.Errorf("the single sign-on provider %s cannot be used: %w", s.Issuer, err)
	}
	o.mu.Lock()
	o.provider, o.provFor = p, s.Issuer
	o.mu.Unlock()
	return p, nil
}

func (o *SSO) oauth(p *oidc.Provider, s OIDCSettings, redirectURL string) *oauth2.Config {
	scopes := []string{oidc.ScopeOpenID}
	for _, sc := range s.Scopes {
		if sc != oidc.ScopeOpenID && !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return &oauth2.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: redirectURL, Scopes: scopes}
}

func random() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Start begins a sign-in and returns the provider's authorization URL to
// send the browser to. returnTo is where the browser goes afterwards.
func (o *SSO) Start(ctx context.Context, s OIDCSettings, redirectURL, returnTo string) (string, error) {
	p, err := o.providerFor(ctx, s)
	if err != nil {
		return "", err
	}
	now := o.clock.Now()
	state, nonce, verifier := random(), random(), oauth2.GenerateVerifier()
	o.mu.Lock()
	for k, v := range o.pending {
		if now.After(v.expires) {
			delete(o.pending, k)
		}
	}
	if len(o.pending) >= maxPending {
		o.mu.Unlock()
		return "", errors.New("too many single sign-on logins are under way; try again in a few minutes")
	}
	o.pending[state] = pendingLogin{verifier: verifier, nonce: nonce, returnTo: returnTo, expires: now.Add(loginTTL)}
	o.mu.Unlock()
	return o.oauth(p, s, redirectURL).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// Finish completes a sign-in from the provider's callback: it exchanges
// the code (with the PKCE verifier), checks the ID token and its nonce,
// and reads the identity from its claims and the userinfo endpoint. It
// returns the identity and where the browser goes next.
func (o *SSO) Finish(ctx context.Context, s OIDCSettings, redirectURL, state, code string) (Identity, string, error) {
	o.mu.Lock()
	pl, ok := o.pending[state]
	delete(o.pending, state)
	o.mu.Unlock()
	if !ok || o.clock.Now().After(pl.expires) {
		return Identity{}, "", ErrSSOState
	}
	p, err := o.providerFor(ctx, s)
	if err != nil {
		return Identity{}, "", err
	}
	cfg := o.oauth(p, s, redirectURL)
	tok, err := cfg.Exchange(o.ctx(ctx), code, oauth2.VerifierOption(pl.verifier))
	if err != nil {
		return Identity{}, "", fmt.Errorf("the provider refused the sign-in code: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, "", errors.New("the provider returned no ID token")
	}
	idt, err := o.VerifyIDToken(ctx, s, raw)
	if err != nil {
		return Identity{}, "", err
	}
	if idt.Nonce != pl.nonce {
		return Identity{}, "", errors.New("the ID token's nonce does not match this sign-in")
	}
	claims := map[string]any{}
	if ui, err := p.UserInfo(o.ctx(ctx), oauth2.StaticTokenSource(tok)); err == nil {
		if ui.Subject == idt.Subject {
			_ = ui.Claims(&claims)
		}
	}
	var idc map[string]any
	if err := idt.Claims(&idc); err != nil {
		return Identity{}, "", fmt.Errorf("the ID token's claims: %w", err)
	}
	for k, v := range idc {
		claims[k] = v
	}
	id, err := identityFromClaims(s, idt.Issuer, idt.Subject, claims)
	return id, pl.returnTo, err
}

// VerifyIDToken checks a raw ID token: signature by the provider's keys,
// issuer, audience (our client ID) and expiry at the clock's time.
func (o *SSO) VerifyIDToken(ctx context.Context, s OIDCSettings, raw string) (*oidc.IDToken, error) {
	p, err := o.providerFor(ctx, s)
	if err != nil {
		return nil, err
	}
	v := p.Verifier(&oidc.Config{ClientID: s.ClientID, Now: o.clock.Now})
	idt, err := v.Verify(o.ctx(ctx), raw)
	if err != nil {
		return nil, fmt.Errorf("the ID token is refused: %w", err)
	}
	return idt, nil
}

// identityFromClaims maps claims to an identity.
func identityFromClaims(s OIDCSettings, issuer, subject string, claims map[string]any) (Identity, error) {
	str := func(name string) string {
		v, _ := claims[name].(string)
		return v
	}
	id := Identity{Source: "oidc", ExternalID: issuer + " " + subject, Username: str(s.UsernameClaim),
		DisplayName: str(s.DisplayNameClaim), Use: s.Use}
	if id.Username == "" {
		return Identity{}, fmt.Errorf("the provider sent no %q claim to use as username", s.UsernameClaim)
	}
	switch v := claims[s.RolesClaim].(type) {
	case string:
		id.Groups = strings.Fields(v)
	case []any:
		for _, g := range v {
			if gs, ok := g.(string); ok {
				id.Groups = append(id.Groups, gs)
			}
		}
	}
	if s.Use != UseUsers {
		id.Roles = rolesFor(s.Groups, id.Groups, func(a, b string) bool { return a == b })
	}
	return id, nil
}
