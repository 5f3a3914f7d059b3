package testenv

import (
	"bytes"
	"context"
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	snowv1 "github.com/snowauth/snowauth/api/v1alpha1"
)

// KubectlGet prints the connections of namespace as `kubectl get snc`
// (`-o wide` with wide) does: the API server turns them into a Table from
// the CRD's printer columns, and cli-runtime's table printer, kubectl's
// own, prints it.
func KubectlGet(ctx context.Context, cfg *rest.Config, namespace string, wide bool) (string, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &snowv1.GroupVersion
	c.APIPath = "/apis"
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return "", err
	}
	raw, err := rc.Get().Namespace(namespace).Resource("servicenowconnections").
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
	if err != nil {
		return "", err
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(raw, table); err != nil {
		return "", err
	}
	table.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Table"))
	var out bytes.Buffer
	if err := printers.NewTablePrinter(printers.PrintOptions{Wide: wide}).PrintObj(table, &out); err != nil {
		return "", err
	}
	return out.String(), nil
}
