package ledger

import (
	"slices"
	"sort"
	"strings"

	"github.com/pare-dev/pare/internal/contract"
)

// explain adds what one disclosure sent, in the contract's words, to items (keyed by words and
// note). Headers and parameters that carry no personal data are left out; everything else is
// listed, in the contract's label or, without one, the recorded name in words.
func explain(k *contract.Catalog, r *Record, items map[string]*Item) {
	recorded := make([]string, 0, len(r.FieldsSent)+len(r.Transformed)+len(r.Transforms))
	recorded = append(recorded, r.FieldsSent...)
	recorded = append(recorded, r.Transformed...)
	recorded = append(recorded, sortedKeys(r.Transforms)...)
	add := func(p, note string) {
		it := k.Item(r.Vendor, p)
		if !it.Personal() {
			return
		}
		words := it.Label
		if words == "" {
			words = Describe(strings.TrimPrefix(strings.TrimPrefix(p, contract.HeaderPrefix), contract.QueryPrefix))
		}
		key := words + "\x00" + note
		item := items[key]
		if item == nil {
			item = &Item{Words: words, Note: note, rank: len(contract.Categories)}
			items[key] = item
		}
		for _, c := range it.Categories {
			w := contract.CategoryWords(c)
			if !slices.Contains(item.Categories, w) {
				item.Categories = append(item.Categories, w)
			}
			if i := categoryRank(c); i < item.rank {
				item.rank = i
			}
		}
	}
	for _, p := range k.Sent(r.Vendor, r.Method, r.Path, recorded) {
		note := ""
		if t, ok := r.Transforms[p]; ok {
			note = DescribeTransform(t)
		}
		if slices.Contains(r.CardsRedacted, p) {
			note = "card numbers in it removed"
		}
		add(p, note)
	}
	if r.DryRun {
		// In dry run the original payload left: what the policy would have
		// removed was sent too.
		for _, p := range r.FieldsRemoved {
			add(p, "sent while the policy was being tested; it would now be removed")
		}
	}
}

func categoryRank(id string) int {
	for i, c := range contract.Categories {
		if c.ID == id {
			return i
		}
	}
	return len(contract.Categories)
}

// describeRecipient fills in what the recipient's contract says: items sorted by category, the
// lawful basis of the purpose, the country, transfer safeguard and retention.
func describeRecipient(k *contract.Catalog, rec *Recipient, items map[string]*Item) {
	for _, it := range items {
		rec.Items = append(rec.Items, *it)
	}
	sort.Slice(rec.Items, func(i, j int) bool {
		a, b := rec.Items[i], rec.Items[j]
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if a.Words != b.Words {
			return a.Words < b.Words
		}
		return a.Note < b.Note
	})
	for _, it := range rec.Items {
		for _, c := range it.Categories {
			if !slices.Contains(rec.Categories, c) {
				rec.Categories = append(rec.Categories, c)
			}
		}
	}
	c := k.Contract(rec.Vendor)
	if c == nil {
		return
	}
	if b, ok := contract.BasisOf(c.BasisFor(rec.Purpose)); ok {
		rec.Basis, rec.BasisArticle = b.Words, b.Article
	}
	if c.Country != "" {
		rec.Country = contract.CountryName(c.Country)
	}
	if t, ok := contract.TransferOf(c.Transfer); ok {
		rec.Transfer, rec.TransferArticle = t.Words, t.Article
	}
	rec.Retention = c.Retention
	rec.VendorName, rec.Reference = c.Name, c.Reference
}
