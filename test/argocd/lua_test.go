package argocd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	// customizations is the directory laid out like Argo CD's
	// resource_customizations: <group>/<kind>/health.lua, ...
	customizations = "../../dist/argocd/resource_customizations"
	gitopsDoc      = "../../docs/gitops.md"

	// timestampPlaceholder in an expected action output stands for "the
	// current time", as in Argo CD's own action tests.
	timestampPlaceholder = "0001-01-01T00:00:00Z"
)

// The two ways Argo CD runs a script: from argocd-cm (and every resource
// action) with only the safe libraries, and as a built-in health check with
// the standard libraries open too. Every script must work in both.
var modes = []struct {
	name     string
	openLibs bool
}{
	{"sandbox", false},
	{"open-libs", true},
}

// healthTests is health_test.yaml. Argo CD reads tests[].healthStatus and
// tests[].inputPath; description names the subtest here.
type healthTests struct {
	Tests []struct {
		Description  string       `json:"description"`
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// actionTests is actions/action_test.yaml, as Argo CD reads it.
type actionTests struct {
	DiscoveryTests []struct {
		Description string           `json:"description"`
		InputPath   string           `json:"inputPath"`
		Result      []resourceAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Description        string `json:"description"`
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

// resourceAction is what a discovery script offers (the fields of Argo CD's
// ResourceAction that snowauth's scripts set).
type resourceAction struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled"`
}

func TestHealth(t *testing.T) {
	dirs := resourceDirs(t, "health_test.yaml")
	for _, dir := range dirs {
		t.Run(groupKind(t, dir), func(t *testing.T) {
			script := readFile(t, filepath.Join(dir, "health.lua"))
			var cases healthTests
			readYAML(t, filepath.Join(dir, "health_test.yaml"), &cases)
			if len(cases.Tests) == 0 {
				t.Fatalf("%s/health_test.yaml has no tests", dir)
			}
			used := map[string]bool{}
			for _, tc := range cases.Tests {
				used[filepath.Clean(tc.InputPath)] = true
				t.Run(caseName(tc.Description, tc.InputPath), func(t *testing.T) {
					g := NewWithT(t)
					g.Expect(tc.HealthStatus.Status).NotTo(BeEmpty(), "healthStatus.status")
					obj := readObject(t, filepath.Join(dir, tc.InputPath))
					for _, m := range modes {
						got, err := executeHealth(obj, script, m.openLibs)
						g.Expect(err).NotTo(HaveOccurred(), m.name)
						g.Expect(got.Status).To(Equal(tc.HealthStatus.Status), "status (%s)", m.name)
						g.Expect(got.Message).To(Equal(tc.HealthStatus.Message), "message (%s)", m.name)
					}
				})
			}
			expectAllUsed(t, filepath.Join(dir, "testdata"), used, "health_test.yaml")
		})
	}
}

func TestActions(t *testing.T) {
	dirs := resourceDirs(t, filepath.Join("actions", "action_test.yaml"))
	for _, dir := range dirs {
		t.Run(groupKind(t, dir), func(t *testing.T) {
			actionsDir := filepath.Join(dir, "actions")
			var cases actionTests
			readYAML(t, filepath.Join(actionsDir, "action_test.yaml"), &cases)
			if len(cases.DiscoveryTests) == 0 || len(cases.ActionTests) == 0 {
				t.Fatalf("%s/action_test.yaml needs discoveryTests and actionTests", actionsDir)
			}
			discovery := readFile(t, filepath.Join(actionsDir, "discovery.lua"))
			used := map[string]bool{}
			tested := map[string]bool{}

			for _, tc := range cases.DiscoveryTests {
				used[filepath.Clean(tc.InputPath)] = true
				t.Run(caseName(tc.Description, "discovery/"+tc.InputPath), func(t *testing.T) {
					g := NewWithT(t)
					obj := readObject(t, filepath.Join(actionsDir, tc.InputPath))
					want := sortedActions(tc.Result)
					for _, m := range modes {
						got, err := executeDiscovery(obj, discovery, m.openLibs)
						g.Expect(err).NotTo(HaveOccurred(), m.name)
						g.Expect(got).To(Equal(want), m.name)
					}
					for _, a := range want {
						if _, err := os.Stat(filepath.Join(actionsDir, a.Name, "action.lua")); err != nil {
							t.Errorf("discovery offers %q but %s/%s/action.lua does not exist", a.Name, actionsDir, a.Name)
						}
					}
				})
			}

			for _, tc := range cases.ActionTests {
				used[filepath.Clean(tc.InputPath)] = true
				used[filepath.Clean(tc.ExpectedOutputPath)] = true
				tested[tc.Action] = true
				t.Run(caseName(tc.Description, "action/"+tc.Action+"/"+tc.InputPath), func(t *testing.T) {
					g := NewWithT(t)
					script := readFile(t, filepath.Join(actionsDir, tc.Action, "action.lua"))
					obj := readObject(t, filepath.Join(actionsDir, tc.InputPath))
					want := normalize(t, readObject(t, filepath.Join(actionsDir, tc.ExpectedOutputPath)))
					for _, m := range modes {
						before := time.Now().UTC().Truncate(time.Second)
						got, err := executeAction(obj, script, m.openLibs)
						after := time.Now().UTC()
						g.Expect(err).NotTo(HaveOccurred(), m.name)
						got = normalize(t, got)
						for _, problem := range matchTimestamps(want, got, "", before, after) {
							t.Errorf("%s: %s", m.name, problem)
						}
						g.Expect(got).To(Equal(want), "the patched object (%s)", m.name)
					}
				})
			}

			entries, err := os.ReadDir(actionsDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.IsDir() && e.Name() != "testdata" && !tested[e.Name()] {
					t.Errorf("action %q has no actionTests in %s/action_test.yaml", e.Name(), actionsDir)
				}
			}
			expectAllUsed(t, filepath.Join(actionsDir, "testdata"), used, "action_test.yaml")
		})
	}
}

// TestDocsConfigMap checks that the argocd-cm snippet in docs/gitops.md holds
// the shipped scripts verbatim, under the keys Argo CD reads.
func TestDocsConfigMap(t *testing.T) {
	g := NewWithT(t)
	doc := readFile(t, gitopsDoc)
	block := regexp.MustCompile("(?s)```yaml\n(apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n.*?)```").FindStringSubmatch(doc)
	if block == nil {
		t.Fatalf("%s has no ```yaml block with the argocd-cm ConfigMap", gitopsDoc)
	}
	var cm struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   map[string]any    `json:"metadata"`
		Data       map[string]string `json:"data"`
	}
	g.Expect(k8syaml.UnmarshalStrict([]byte(block[1]), &cm)).To(Succeed())

	dir := filepath.Join(customizations, "servicenow.snowauth.dev", "ServiceNowConnection")
	const key = "servicenow.snowauth.dev_ServiceNowConnection"
	g.Expect(cm.Data).To(HaveKeyWithValue("resource.customizations.health."+key, readFile(t, filepath.Join(dir, "health.lua"))))
	g.Expect(cm.Data).To(HaveKey("resource.customizations.actions." + key))

	var actions struct {
		DiscoveryLua string `json:"discovery.lua"`
		Definitions  []struct {
			Name      string `json:"name"`
			ActionLua string `json:"action.lua"`
		} `json:"definitions"`
	}
	g.Expect(k8syaml.UnmarshalStrict([]byte(cm.Data["resource.customizations.actions."+key]), &actions)).To(Succeed())
	g.Expect(actions.DiscoveryLua).To(Equal(readFile(t, filepath.Join(dir, "actions", "discovery.lua"))))
	g.Expect(actions.Definitions).To(HaveLen(1))
	g.Expect(actions.Definitions[0].Name).To(Equal("refresh"))
	g.Expect(actions.Definitions[0].ActionLua).To(Equal(readFile(t, filepath.Join(dir, "actions", "refresh", "action.lua"))))
}

// --- Argo CD's Lua VM (util/lua/lua.go and oslib_safe.go), reproduced ---

// runLua runs script with obj as the global obj and returns what it returned.
func runLua(obj map[string]any, script string, openLibs bool) (lua.LValue, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	// require("os") returns the safe os module.
	l.PreloadModule(lua.OsLibName, safeOsLoader)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	return l.Get(-1), nil
}

// openSafeOs is Argo CD's OpenSafeOs. Like Argo CD's, it registers date and
// time under the name "table", not "os": in the sandbox there is no global
// os, and scripts must use require("os"). Reproduced on purpose, so that a
// script relying on a global os fails here as it fails in Argo CD.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

// safeOsFuncs are os.date and os.time of gopher-lua's os library, of which
// Argo CD's safe os module is a copy; nothing else of os.
var safeOsFuncs = func() map[string]lua.LGFunction {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	if err := l.CallByParam(lua.P{Fn: l.NewFunction(lua.OpenOs), NRet: 1, Protect: true}, lua.LString(lua.OsLibName)); err != nil {
		panic(err)
	}
	mod := l.Get(-1).(*lua.LTable)
	funcs := map[string]lua.LGFunction{}
	for _, name := range []string{"date", "time"} {
		funcs[name] = mod.RawGetString(name).(*lua.LFunction).GFunction
	}
	return funcs
}()

// decodeValue is Argo CD's conversion of the object to a Lua value.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

// encodeValue turns a returned Lua value into JSON-like Go values as
// layeh.com/gopher-json, which Argo CD uses, encodes it: a table whose first
// key is a number is an array (1, 2, ... with no gaps), one whose first key
// is a string an object, and an empty table an empty array.
func encodeValue(v lua.LValue, visited map[*lua.LTable]bool) (any, error) {
	switch v := v.(type) {
	case lua.LBool:
		return bool(v), nil
	case lua.LNumber:
		return float64(v), nil
	case lua.LString:
		return string(v), nil
	case *lua.LNilType:
		return nil, nil
	case *lua.LTable:
		if visited[v] {
			return nil, errors.New("cannot encode recursively nested tables to JSON")
		}
		visited[v] = true
		key, value := v.Next(lua.LNil)
		switch key.Type() {
		case lua.LTNil:
			return []any{}, nil
		case lua.LTNumber:
			arr := []any{}
			expected := lua.LNumber(1)
			for key != lua.LNil {
				if key.Type() != lua.LTNumber {
					return nil, errors.New("cannot encode mixed or invalid key types")
				}
				if key.(lua.LNumber) != expected {
					return nil, errors.New("cannot encode sparse array")
				}
				item, err := encodeValue(value, visited)
				if err != nil {
					return nil, err
				}
				arr = append(arr, item)
				expected++
				key, value = v.Next(key)
			}
			return arr, nil
		case lua.LTString:
			obj := map[string]any{}
			for key != lua.LNil {
				if key.Type() != lua.LTString {
					return nil, errors.New("cannot encode mixed or invalid key types")
				}
				item, err := encodeValue(value, visited)
				if err != nil {
					return nil, err
				}
				obj[key.String()] = item
				key, value = v.Next(key)
			}
			return obj, nil
		}
		return nil, errors.New("cannot encode mixed or invalid key types")
	}
	return nil, fmt.Errorf("cannot encode %s to JSON", v.Type())
}

func returnedTable(ret lua.LValue) (any, error) {
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	return encodeValue(ret, map[*lua.LTable]bool{})
}

// executeHealth is Argo CD's ExecuteHealthLua.
func executeHealth(obj map[string]any, script string, openLibs bool) (healthStatus, error) {
	ret, err := runLua(obj, script, openLibs)
	if err != nil {
		return healthStatus{}, err
	}
	v, err := returnedTable(ret)
	if err != nil {
		return healthStatus{}, err
	}
	var hs healthStatus
	if err := roundTrip(v, &hs); err != nil {
		return healthStatus{}, err
	}
	switch hs.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return hs, nil
	}
	return healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

// executeDiscovery is Argo CD's ExecuteResourceActionDiscovery, sorted by
// name.
func executeDiscovery(obj map[string]any, script string, openLibs bool) ([]resourceAction, error) {
	ret, err := runLua(obj, script, openLibs)
	if err != nil {
		return nil, err
	}
	v, err := returnedTable(ret)
	if err != nil {
		return nil, err
	}
	actions := []resourceAction{}
	if arr, ok := v.([]any); ok && len(arr) == 0 {
		return actions, nil
	}
	byName, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("discovery returned %T, not a table of actions by name", v)
	}
	for name, def := range byName {
		a := resourceAction{Name: name}
		if fields, ok := def.(map[string]any); ok {
			if disabled, ok := fields["disabled"].(bool); ok {
				a.Disabled = disabled
			}
		}
		actions = append(actions, a)
	}
	return sortedActions(actions), nil
}

// executeAction is Argo CD's ExecuteResourceAction for an action that
// returns the modified object (a patch of the source resource).
func executeAction(obj map[string]any, script string, openLibs bool) (map[string]any, error) {
	ret, err := runLua(obj, script, openLibs)
	if err != nil {
		return nil, err
	}
	v, err := returnedTable(ret)
	if err != nil {
		return nil, err
	}
	newObj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the action returned %T; this test knows only actions that return the modified object", v)
	}
	return cleanReturnedObj(newObj, obj), nil
}

// cleanReturnedObj is Argo CD's: Lua cannot tell an empty object from an
// empty array, so an empty array where the input had an object is put back
// as the object.
func cleanReturnedObj(newObj, obj map[string]any) map[string]any {
	for key, oldValue := range obj {
		switch newValue := newObj[key].(type) {
		case map[string]any:
			if old, ok := oldValue.(map[string]any); ok {
				newObj[key] = cleanReturnedObj(newValue, old)
			}
		case []any:
			switch old := oldValue.(type) {
			case map[string]any:
				if len(newValue) == 0 {
					newObj[key] = old
				}
			case []any:
				newObj[key] = cleanReturnedArray(newValue, old)
			}
		}
	}
	return newObj
}

func cleanReturnedArray(newArr, arr []any) []any {
	for i := range newArr {
		if i >= len(arr) {
			break
		}
		switch newValue := newArr[i].(type) {
		case map[string]any:
			if old, ok := arr[i].(map[string]any); ok {
				newArr[i] = cleanReturnedObj(newValue, old)
			}
		case []any:
			if old, ok := arr[i].([]any); ok {
				newArr[i] = cleanReturnedArray(newValue, old)
			}
		}
	}
	return newArr
}

// --- helpers ---

// resourceDirs are the <group>/<kind> directories holding file.
func resourceDirs(t *testing.T, file string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(customizations, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, string(filepath.Separator)+file) {
			dirs = append(dirs, strings.TrimSuffix(path, string(filepath.Separator)+file))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatalf("no %s under %s", file, customizations)
	}
	sort.Strings(dirs)
	return dirs
}

// groupKind names a resource directory as Argo CD does: group/Kind.
func groupKind(t *testing.T, dir string) string {
	t.Helper()
	rel, err := filepath.Rel(customizations, dir)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

func caseName(description, fallback string) string {
	if description != "" {
		return description
	}
	return strings.TrimSuffix(fallback, ".yaml")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readYAML reads a test file strictly: a misspelt key is an error, not a
// case that silently expects nothing.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	if err := k8syaml.UnmarshalStrict([]byte(readFile(t, path)), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// readObject reads a resource as the API server hands it to Argo CD:
// integers as int64, other numbers as float64.
func readObject(t *testing.T, path string) map[string]any {
	t.Helper()
	obj := map[string]any{}
	if err := k8syaml.Unmarshal([]byte(readFile(t, path)), &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if obj["apiVersion"] == nil || obj["kind"] == nil {
		t.Fatalf("%s is not a Kubernetes object", path)
	}
	return obj
}

// expectAllUsed fails for a testdata file no case reads.
func expectAllUsed(t *testing.T, testdata string, used map[string]bool, by string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		rel := filepath.Join("testdata", filepath.Base(f))
		if !used[rel] {
			t.Errorf("%s is not used by any case in %s", f, by)
		}
	}
}

func sortedActions(actions []resourceAction) []resourceAction {
	out := append([]resourceAction{}, actions...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func roundTrip(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	return d.Decode(out)
}

// normalize makes numbers float64 on both sides, as Argo CD's diff does not
// tell 1 from 1.0.
func normalize(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	out := map[string]any{}
	if err := roundTrip(obj, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// matchTimestamps finds every timestamp placeholder in want, checks that got
// holds an RFC 3339 time between before and after at the same place, and
// puts the placeholder into got there so that the rest can be compared.
func matchTimestamps(want, got any, path string, before, after time.Time) []string {
	var problems []string
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return nil
		}
		for k, wv := range w {
			if s, ok := wv.(string); ok && s == timestampPlaceholder {
				problems = append(problems, checkTimestamp(g, k, path+"/"+k, before, after)...)
				continue
			}
			problems = append(problems, matchTimestamps(wv, g[k], path+"/"+k, before, after)...)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return nil
		}
		for i := range w {
			if i < len(g) {
				problems = append(problems, matchTimestamps(w[i], g[i], fmt.Sprintf("%s/%d", path, i), before, after)...)
			}
		}
	}
	return problems
}

func checkTimestamp(got map[string]any, key, path string, before, after time.Time) []string {
	s, ok := got[key].(string)
	if !ok {
		return []string{fmt.Sprintf("%s: want the current time, got %v", path, got[key])}
	}
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return []string{fmt.Sprintf("%s: %q is not RFC 3339: %v", path, s, err)}
	}
	if !strings.HasSuffix(s, "Z") {
		return []string{fmt.Sprintf("%s: %q is not in UTC", path, s)}
	}
	if ts.Before(before) || ts.After(after) {
		return []string{fmt.Sprintf("%s: %s is not the time the action ran (%s to %s)",
			path, s, before.Format(time.RFC3339), after.Format(time.RFC3339))}
	}
	got[key] = timestampPlaceholder
	return nil
}
