// Submit mode: the peer acts as an agent submitting a PR or DR to the Leader (docs/PROTOCOL.md
// section 10), built from the protocol text alone: the record (canonical JSON, given) is signed
// with Ed25519, sealed with filippo.io/age (armored) to the Leader bundle's recipients, wrapped in
// a signed envelope, and published on cooee/submission/v1 every second until the Leader's
// receipt for it arrives on cooee/receipt/v1; the receipt's envelope and record signatures are
// checked against the pinned Leader key before it is printed as {"event":"receipt",...}.
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
)

const (
	recordContext   = "cooee-record-v1\n"
	envelopeContext = "cooee-envelope-v1\n"
	submissionTopic = "cooee/submission/v1"
	receiptTopic    = "cooee/receipt/v1"
)

var b64url = base64.RawURLEncoding

type submitter struct {
	envelope  []byte
	id        string
	leaderKey ed25519.PublicKey
	answered  atomic.Bool
}

// canonical is JSON with sorted keys (maps), no HTML escaping and no trailing newline.
func canonical(value any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(value); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// parseBundle reads "cooee-leader-v1.<ed25519>.<age1...>[.<age1...>...]".
func parseBundle(text string) (ed25519.PublicKey, []age.Recipient, error) {
	parts := strings.Split(strings.TrimSpace(text), ".")
	if len(parts) < 3 || parts[0] != "cooee-leader-v1" {
		return nil, nil, fmt.Errorf("not a cooee-leader-v1 bundle")
	}
	key, err := b64url.DecodeString(parts[1])
	if err != nil || len(key) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("bad Leader verify key")
	}
	var recipients []age.Recipient
	for _, r := range parts[2:] {
		recipient, err := age.ParseX25519Recipient(r)
		if err != nil {
			return nil, nil, err
		}
		recipients = append(recipients, recipient)
	}
	return ed25519.PublicKey(key), recipients, nil
}

func newSubmitter(recordFile, seedHex, bundle, address string) (*submitter, error) {
	raw, err := os.ReadFile(recordFile)
	if err != nil {
		return nil, err
	}
	raw = bytes.TrimSpace(raw) // the record as given: already canonical JSON
	var head struct {
		Kind  string `json:"kind"`
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, err
	}
	seed, err := hex.DecodeString(strings.TrimSpace(seedHex))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("bad agent seed")
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := b64url.EncodeToString(priv.Public().(ed25519.PublicKey))
	leaderKey, recipients, err := parseBundle(bundle)
	if err != nil {
		return nil, err
	}
	// Keys sorted: record, sig, signer; the record's bytes kept as they are.
	sig := b64url.EncodeToString(ed25519.Sign(priv, append([]byte(recordContext), raw...)))
	signed := fmt.Sprintf(`{"record":%s,"sig":"%s","signer":"%s"}`, raw, sig, pub)

	var sealed bytes.Buffer
	armored := armor.NewWriter(&sealed)
	w, err := age.Encrypt(armored, recipients...)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, signed); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := armored.Close(); err != nil {
		return nil, err
	}
	envelope := map[string]any{
		"v": 1, "kind": head.Kind, "address": address, "body": sealed.String(), "sender": pub,
		"sent_at": time.Now().UTC().Format("2006-01-02T15:04:05Z"),
	}
	unsigned, err := canonical(envelope)
	if err != nil {
		return nil, err
	}
	envelope["sig"] = b64url.EncodeToString(
		ed25519.Sign(priv, append([]byte(envelopeContext), unsigned...)))
	data, err := canonical(envelope)
	if err != nil {
		return nil, err
	}
	return &submitter{envelope: data, id: head.Nonce, leaderKey: leaderKey}, nil
}

// openReceipt checks a receipt envelope from the pinned Leader and returns its record when it
// answers our submission.
func (s *submitter) openReceipt(data []byte, ids []age.Identity) (map[string]any, error) {
	var envelope map[string]any
	if err := json.Unmarshal(data, &envelope); err != nil {
		return nil, err
	}
	if envelope["sender"] != b64url.EncodeToString(s.leaderKey) {
		return nil, fmt.Errorf("not from the pinned Leader")
	}
	sig, err := b64url.DecodeString(fmt.Sprint(envelope["sig"]))
	if err != nil {
		return nil, err
	}
	delete(envelope, "sig")
	unsigned, err := canonical(envelope)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(s.leaderKey, append([]byte(envelopeContext), unsigned...), sig) {
		return nil, fmt.Errorf("envelope signature does not verify")
	}
	plaintext, err := openBody(data, ids)
	if err != nil {
		return nil, err
	}
	var signed struct {
		Record json.RawMessage `json:"record"`
		Signer string          `json:"signer"`
		Sig    string          `json:"sig"`
	}
	if err := json.Unmarshal(plaintext, &signed); err != nil {
		return nil, err
	}
	recordSig, err := b64url.DecodeString(signed.Sig)
	if err != nil {
		return nil, err
	}
	if signed.Signer != b64url.EncodeToString(s.leaderKey) ||
		!ed25519.Verify(s.leaderKey, append([]byte(recordContext), signed.Record...), recordSig) {
		return nil, fmt.Errorf("record signature does not verify")
	}
	var record map[string]any
	if err := json.Unmarshal(signed.Record, &record); err != nil {
		return nil, err
	}
	if record["kind"] != "receipt" || record["submission"] != s.id {
		return nil, fmt.Errorf("not the receipt of %s", s.id)
	}
	return record, nil
}
