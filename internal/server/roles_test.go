package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"conclave/internal/auth"
	"conclave/internal/config"
	"conclave/internal/perm"
	"conclave/internal/testutil/testserver"
	"conclave/internal/web"
)

// openServerWith starts a node whose configuration change adjusts.
func openServerWith(t *testing.T, change func(*config.Config)) *testserver.Server {
	t.Helper()
	return testserver.Start(t, testserver.Options{Config: change})
}

// schemaChecker checks every API answer a test receives against
// docs/openapi.yaml: its status must be documented for the operation and
// its body must match the schema.
type schemaChecker struct {
	t      *testing.T
	router routers.Router
	next   http.RoundTripper

	mu       sync.Mutex
	failures []string
	checked  map[string]bool // "METHOD /path/template"
}

func newSchemaChecker(t *testing.T, base string) *schemaChecker {
	doc, err := web.OpenAPIDocument()
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	r, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &schemaChecker{t: t, router: r, checked: map[string]bool{},
		next: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
}

func (c *schemaChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || !strings.HasPrefix(req.URL.Path, "/api/") {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	route, params, ferr := c.router.FindRoute(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ferr != nil {
		if resp.StatusCode != http.StatusNotFound {
			c.failures = append(c.failures, fmt.Sprintf("%s %s: not in the document (%v)", req.Method, req.URL.Path, ferr))
		}
		return resp, nil
	}
	c.checked[req.Method+" "+route.Path] = true
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		c.failures = append(c.failures, fmt.Sprintf("%s %s -> %d: %v", req.Method, req.URL.Path, resp.StatusCode, err))
	}
	return resp, nil
}

func (c *schemaChecker) check() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.failures {
		c.t.Errorf("schema: %s", f)
	}
}

// client returns an API client whose answers are checked.
func (c *schemaChecker) client(t *testing.T, base string) *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{t: t, base: base, hc: &http.Client{Jar: jar, Transport: c}}
}

func (c *apiClient) login(username, password string) map[string]any {
	c.t.Helper()
	st, body, _ := c.do("POST", "/api/login", map[string]string{"username": username, "password": password}, false)
	if st != http.StatusOK {
		c.t.Fatalf("login %s: %d %v", username, st, body)
	}
	c.csrf, _ = body["csrf"].(string)
	return body
}

// addAccount creates a local account with roles and a password that need
// not be changed.
func addAccount(t *testing.T, srv *testserver.Server, username string, roles ...string) {
	t.Helper()
	_, err := srv.Lifecycle().Create(context.Background(), auth.CLIActor(),
		auth.NewAccount{Username: username, Password: testPassword, KeepPassword: true, Roles: roles})
	if err != nil {
		t.Fatalf("create %s: %v", username, err)
	}
}

// fillPath puts placeholder values into a route's path parameters.
func fillPath(p string) string {
	r := strings.NewReplacer("{username}", "nobody", "{alias}", "no-room", "{name}", "no-role", "{id}", "AAAA")
	return r.Replace(p)
}

// TestRouteRoleMatrix walks every management route with an account of
// every built-in role and of a custom role holding one permission: each
// gets 403 forbidden exactly on the routes whose permission its role
// lacks, and something else on the others. Every answer is checked
// against docs/openapi.yaml.
func TestRouteRoleMatrix(t *testing.T) {
	srv := openServerWith(t, nil)
	checker := newSchemaChecker(t, srv.URL())
	ctx := context.Background()

	// A custom role with one permission, made through the API.
	addAccount(t, srv, "root", perm.Administrator)
	admin := checker.client(t, srv.URL())
	admin.login("root", testPassword)
	st, body, _ := admin.do("POST", "/api/roles", map[string]any{"name": "room-lister", "description": "sees rooms",
		"permissions": []string{"rooms.view"}}, true)
	if st != http.StatusCreated {
		t.Fatalf("create custom role: %d %v", st, body)
	}
	roles := append(perm.BuiltIn(), perm.Role{Name: "room-lister", Permissions: []perm.Permission{perm.RoomsView}})

	var routes []web.Route
	for _, rt := range (&web.Server{}).Routes() {
		if rt.Manage != nil {
			routes = append(routes, rt)
		}
	}
	if len(routes) < 30 {
		t.Fatalf("only %d management routes", len(routes))
	}
	for _, role := range roles {
		name := "u-" + role.Name
		addAccount(t, srv, name, role.Name)
		c := checker.client(t, srv.URL())
		c.login(name, testPassword)
		allowed := 0
		for _, rt := range routes {
			var body any
			if rt.Method != "GET" && rt.Method != "DELETE" {
				body = map[string]any{}
			}
			st, resp, _ := c.do(rt.Method, fillPath(rt.Path), body, true)
			forbidden := st == http.StatusForbidden && errCode(resp) == "forbidden"
			if role.Has(rt.Perm) == forbidden {
				t.Errorf("role %s, %s %s (needs %s): %d %v", role.Name, rt.Method, rt.Path, rt.Perm, st, resp)
			}
			if !forbidden {
				allowed++
			}
		}
		t.Logf("role %s: %d of %d routes", role.Name, allowed, len(routes))
		if role.Name == "room-lister" {
			// The one thing it may do, it does.
			if st, body, _ := c.do("GET", "/api/rooms", nil, false); st != http.StatusOK {
				t.Errorf("room-lister lists rooms: %d %v", st, body)
			}
			want := 0
			for _, rt := range routes {
				if rt.Perm == perm.RoomsView {
					want++
				}
			}
			if allowed != want {
				t.Errorf("room-lister may use %d routes, want the %d that need rooms.view", allowed, want)
			}
		}
	}
	// A meeting user has no management permission at all.
	if _, err := srv.Lifecycle().Create(ctx, auth.CLIActor(), auth.NewAccount{Username: "member", Password: testPassword,
		KeepPassword: true}); err != nil {
		t.Fatal(err)
	}
	c := checker.client(t, srv.URL())
	c.login("member", testPassword)
	for _, rt := range routes {
		if st, resp, _ := c.do(rt.Method, fillPath(rt.Path), nil, true); st != http.StatusForbidden || errCode(resp) != "forbidden" {
			t.Errorf("meeting user, %s %s: %d %v", rt.Method, rt.Path, st, resp)
		}
	}
	checker.check()
	t.Logf("%d documented operations checked", len(checker.checked))
}
