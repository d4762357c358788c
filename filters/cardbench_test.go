package filters

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// benchTicketText is support-ticket prose of about 16 KiB with the numbers
// tickets carry (dates, order and invoice numbers, phone numbers, amounts,
// a last4) and no card number: the common case of the guard.
func benchTicketText() []byte {
	sentences := []string{
		"Hi team, since yesterday I cannot join my own webinar room from Safari 17.1 on macOS 14.2. ",
		"My account is maria.kowalska@example.org and the card ending 4242 was charged twice on 2024-11-20. ",
		"Order #100234 (invoice INV-2024-00871, 49.00 EUR + 23% VAT = 60.27 EUR) shows as unpaid. ",
		"You can reach me on +48 601 234 567 or at the office, (022) 555-0199 ext. 42, between 9:00 and 17:30. ",
		"The recording of the session on 15.01.2025 stopped at 01:12:45; 311 attendees were registered. ",
		"Our VAT ID is PL5261040828 and the shipping address is ul. Marszalkowska 84/92, 00-514 Warszawa. ",
		"Please refund the second charge of $1,234.56 and confirm by email. Thanks, Maria. ",
	}
	var b strings.Builder
	for i := 0; b.Len() < 16<<10; i++ {
		b.WriteString(sentences[i%len(sentences)])
	}
	return []byte(b.String())
}

// benchOpaque returns 10 MiB of random bytes (a compressed upload) or of
// CSV-like text with numbers (an export), with no card number.
func benchOpaque(text bool) []byte {
	r := rand.New(rand.NewPCG(10, 10))
	out := make([]byte, 0, 10<<20)
	if !text {
		for len(out) < 10<<20 {
			out = append(out, byte(r.Uint32()))
		}
		return out
	}
	for len(out) < 10<<20 {
		out = append(out, "2024-11-20,wb_"...)
		out = append(out, byte('0'+r.IntN(10)), byte('0'+r.IntN(10)), byte('0'+r.IntN(10)))
		out = append(out, ",Maria Kowalska,maria.kowalska@example.org,+48 601 234 567,registered,49.00\n"...)
	}
	return out
}

func BenchmarkCardScanTicketText(b *testing.B) {
	text := benchTicketText()
	if hasCard(text) {
		b.Fatal("benchmark text has a card number")
	}
	b.Run("new", func(b *testing.B) { cpuThroughput(b, int64(len(text)), func() { hasCard(text) }) })
	b.Run("old", func(b *testing.B) { cpuThroughput(b, int64(len(text)), func() { oldHasCard(text) }) })
}

// BenchmarkCardScanProse is text without digits: what skipToDigit does.
func BenchmarkCardScanProse(b *testing.B) {
	text := bytes.Repeat([]byte("The quick brown fox jumps over the lazy dog; "), 1<<10)
	b.Run("new", func(b *testing.B) { cpuThroughput(b, int64(len(text)), func() { CardIndex(text) }) })
	b.Run("old", func(b *testing.B) { cpuThroughput(b, int64(len(text)), func() { oldFindCard(text, 0) }) })
}

func BenchmarkCardScanNonASCII(b *testing.B) {
	text := bytes.Repeat([]byte("ウェビナーに参加できません。注文番号 ２０２４１１２０、金額 ４９ユーロ。"), 1<<8)
	cpuThroughput(b, int64(len(text)), func() { CardIndex(text) })
}

func BenchmarkCardWriterOpaque(b *testing.B) {
	for _, kind := range []struct {
		name string
		text bool
	}{{"binary", false}, {"text", true}} {
		body := benchOpaque(kind.text)
		for _, g := range []CardGuard{CardsBlock, CardsRedact} {
			b.Run(kind.name+"/"+g.String(), func(b *testing.B) {
				b.ReportAllocs()
				cpuThroughput(b, int64(len(body)), func() {
					w := NewCardWriter(io.Discard, g)
					for i := 0; i < len(body); i += 32 << 10 {
						if _, err := w.Write(body[i:min(i+32<<10, len(body))]); err != nil {
							b.Fatal(err)
						}
					}
					if err := w.Close(); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// checkoutValues returns the strings (unescaped) and number literals of
// testdata/checkout.json, what the guard scans when a mask keeps it all.
func checkoutValues(b *testing.B) (strs, nums [][]byte) {
	doc := readTestdata(b, "checkout.json")
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case string:
			strs = append(strs, []byte(v))
		case json.Number:
			nums = append(nums, []byte(v))
		}
	}
	return strs, nums
}

// BenchmarkCardGuardCheckout is the guard's own cost on checkout.json,
// every key and value, old detector against new in one process: the part
// of the JSON mask's time this change can move.
func BenchmarkCardGuardCheckout(b *testing.B) {
	strs, nums := checkoutValues(b)
	size := int64(len(readTestdata(b, "checkout.json")))
	b.Run("new", func(b *testing.B) {
		cpuThroughput(b, size, func() {
			for _, s := range strs {
				hasCard(s)
			}
			for _, n := range nums {
				numberHasCard(n)
			}
		})
	})
	b.Run("old", func(b *testing.B) {
		cpuThroughput(b, size, func() {
			for _, s := range strs {
				oldHasCard(s)
			}
			for _, n := range nums {
				oldHasCard(n)
			}
		})
	})
}
