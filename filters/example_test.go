package filters_test

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pare-dev/pare/filters"
)

func Example() {
	// Compile once per decision: the fields and transforms a contract allows.
	mask, err := filters.Compile(
		[]string{"amount", "currency", "card", "items/*/sku"},
		map[string]string{"customer/email": "hmac", "customer/date_of_birth": "year"},
	)
	if err != nil {
		panic(err)
	}
	body := []byte(`{
		"amount": 4900, "currency": "eur",
		"customer": {"email": "maria@example.org", "date_of_birth": "1986-04-17", "phone": "+48 601 234 567"},
		"card": {"number": "4242424242424242", "cvc": "314"},
		"items": [{"sku": "LIVE25-Y", "name": "Live 25"}, {"sku": "REC-ADDON"}]
	}`)

	// The payment processor may receive card numbers; everyone else gets
	// the zero value, CardsBlock.
	opt := &filters.Options{HMACKey: []byte("per-vendor key"), Cards: filters.CardsAllow}
	out, rep, err := mask.JSON(nil, body, opt)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
	fmt.Println("kept:", rep.Kept)
	fmt.Println("removed:", rep.Removed, rep.RemovedCount)
	fmt.Println("transformed:", rep.Transformed)

	// Under the default guard the same body is refused, naming the path only.
	_, _, err = mask.JSON(nil, body, &filters.Options{HMACKey: []byte("k")})
	fmt.Println(errors.Is(err, filters.ErrCardNumber), err)

	q, _, _ := filters.Query("expand[]=customer&email=maria%40example.org", []string{"expand"}, nil)
	fmt.Println(q)

	h := http.Header{"Authorization": {"Bearer sk"}, "Content-Type": {"application/json"}, "X-Data-Subject": {"u-123"}}
	filters.Headers(h, []string{"authorization", "x-data-subject"})
	fmt.Println(len(h), h.Get("X-Data-Subject") == "")

	// Output:
	// {"amount":4900,"currency":"eur","customer":{"email":"885c128929f5ebde18fd1937ee97b6a4a913e09f3ccc68ff4b16278ea9e4d1a6","date_of_birth":"1986"},"card":{"number":"4242424242424242","cvc":"314"},"items":[{"sku":"LIVE25-Y"},{"sku":"REC-ADDON"}]}
	// kept: [amount currency customer/email customer/date_of_birth card items/*/sku]
	// removed: [customer/phone items/*/name] 2
	// transformed: [customer/email customer/date_of_birth]
	// true filters: card number in outbound payload at card/number
	// expand[]=customer
	// 1 true
}
