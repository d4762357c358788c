package filters_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/pare-dev/pare/filters"
)

// A header value or a decoded path segment is checked as a string, without
// a copy.
func ExampleCardIndexString() {
	v := "refund 4111 1111 1111 1111 exp 12/29 cvv 123"
	start, end := filters.CardIndexString(v)
	fmt.Printf("%d %d %q\n", start, end, v[start:end])

	// Written the way people paste them: fullwidth digits and ideographic
	// spaces, a no-break space, the CVV typed on.
	for _, v := range []string{"４１１１　１１１１　１１１１　１１１１", "4111\u00a01111\u00a01111\u00a01111", "4111111111111111123"} {
		start, _ := filters.CardIndexString(v)
		fmt.Println(start >= 0)
	}
	// Look-alikes: an IMEI (Luhn-valid, no card scheme), a 16-digit
	// microsecond timestamp, an IBAN.
	for _, v := range []string{"IMEI 35-209900-176148-1", "ts=1732101791512345", "DE89 3704 0044 0532 0130 00"} {
		start, _ := filters.CardIndexString(v)
		fmt.Println(start >= 0)
	}
	// Output:
	// 7 26 "4111 1111 1111 1111"
	// true
	// true
	// true
	// false
	// false
	// false
}

// GuardCardsString applies a decision's cards key to one value.
func ExampleGuardCardsString() {
	v := "note: card 4242-4242-4242-4242, thanks"
	for _, g := range []filters.CardGuard{filters.CardsBlock, filters.CardsRedact, filters.CardsAllow} {
		out, n, err := filters.GuardCardsString(v, g)
		fmt.Printf("%s: %q %d %v\n", g, out, n, errors.Is(err, filters.ErrCardNumber))
	}
	// Output:
	// block: "note: card 4242-4242-4242-4242, thanks" 0 true
	// redact: "note: card [CARD REDACTED], thanks" 1 false
	// allow: "note: card 4242-4242-4242-4242, thanks" 0 false
}

// An opaque body streams through a CardWriter on its way out; a card
// number cut across two Writes (here inside a three-byte fullwidth digit)
// is found, and none of its bytes reaches the vendor.
func ExampleCardWriter() {
	var vendor bytes.Buffer
	w := filters.NewCardWriter(&vendor, filters.CardsBlock)
	body := "id,card\n1,４１１１１１１１１１１１１１１１\n"
	cut := strings.Index(body, "１１１１１１１１１１") + 1 // inside a digit
	_, err1 := w.Write([]byte(body[:cut]))
	_, err2 := w.Write([]byte(body[cut:]))
	fmt.Println(err1, errors.Is(err2, filters.ErrCardNumber))
	fmt.Printf("the vendor got %q\n", vendor.String())

	vendor.Reset()
	w = filters.NewCardWriter(&vendor, filters.CardsRedact)
	w.Write([]byte(body[:cut]))
	w.Write([]byte(body[cut:]))
	w.Close()
	fmt.Printf("%q %d\n", vendor.String(), w.Cards())
	// Output:
	// <nil> true
	// the vendor got "id,card\n1,"
	// "id,card\n1,[CARD REDACTED]\n" 1
}

func ExampleAppendRedactCards() {
	out, n := filters.AppendRedactCards(nil, []byte("cards 4242424242424242 and 3782 822463 10005, order 12345"))
	fmt.Println(string(out), n)
	// Output:
	// cards [CARD REDACTED] and [CARD REDACTED], order 12345 2
}
