// Command lkproto-conformance-go is the lkproto conformance adapter for server-sdk-go v2: one
// Room driven by JSON lines.
//
// The protocol (requests on stdin, replies and events on stdout) is specified in
// lkproto/conformance/process_adapters.py; this file only maps each operation onto the SDK.
// The SDK's own logging goes to stderr; stdout carries protocol lines only.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

const (
	sdkName         = "github.com/livekit/server-sdk-go/v2 v2.19.0"
	protocolVersion = 1
	opusFrame       = 20 * time.Millisecond
	// How long after the first received packet hear_tone collects, beyond the asked seconds:
	// the runner skips leading silence and 0.25 s of start-up before it measures.
	hearMargin = 2 * time.Second
)

// refusal is an error reply of a given kind (see the protocol's "kind").
type refusal struct {
	kind    string
	message string
	extra   map[string]any
}

func (r *refusal) Error() string { return r.message }

func unsupported(format string, args ...any) error {
	return &refusal{kind: "unsupported", message: fmt.Sprintf(format, args...)}
}

var (
	outMu sync.Mutex
	out   = bufio.NewWriterSize(os.Stdout, 1<<16)
)

func send(msg map[string]any) {
	line, err := json.Marshal(msg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot encode %v: %v\n", msg, err)
		return
	}
	outMu.Lock()
	defer outMu.Unlock()
	out.Write(line)
	out.WriteByte('\n')
	out.Flush()
}

// audioTap collects the Opus payloads of one remote participant's audio while a hear_tone
// request is waiting for them.
type audioTap struct {
	mu       sync.Mutex
	payloads [][]byte
	first    time.Time
	until    time.Duration
	done     chan struct{}
}

type adapter struct {
	mu        sync.Mutex
	room      *lksdk.Room
	tonePub   *lksdk.LocalTrackPublication
	toneStop  chan struct{}
	tracks    map[string]*webrtc.TrackRemote // identity -> subscribed audio track
	taps      map[string]*audioTap           // identity -> active collector
	connected bool
}

func newAdapter() *adapter {
	return &adapter{tracks: map[string]*webrtc.TrackRemote{}, taps: map[string]*audioTap{}}
}

func (a *adapter) setConnected(v bool) {
	a.mu.Lock()
	a.connected = v
	a.mu.Unlock()
	send(map[string]any{"event": "state", "connected": v})
}

func (a *adapter) callbacks() *lksdk.RoomCallback {
	cb := lksdk.NewRoomCallback()
	cb.OnDataPacket = func(packet lksdk.DataPacket, params lksdk.DataReceiveParams) {
		user, ok := packet.(*lksdk.UserDataPacket)
		if !ok {
			return
		}
		// The SDK does not say on which channel (reliable or lossy) the packet came.
		send(map[string]any{
			"event": "data", "payload_b64": base64.StdEncoding.EncodeToString(user.Payload),
			"sender": params.SenderIdentity, "topic": user.Topic, "reliable": nil,
		})
	}
	cb.OnParticipantDisconnected = func(p *lksdk.RemoteParticipant) {
		send(map[string]any{"event": "left", "identity": p.Identity()})
	}
	cb.OnReconnecting = func() { a.setConnected(false) }
	cb.OnReconnected = func() {
		a.mu.Lock()
		a.connected = true
		a.mu.Unlock()
		send(map[string]any{"event": "reconnected"})
	}
	cb.OnDisconnectedWithReason = func(reason lksdk.DisconnectionReason) {
		a.mu.Lock()
		a.connected = false
		a.mu.Unlock()
		// Only the SDK's reduced string is available (callback.go GetDisconnectionReason);
		// the runner maps the unambiguous ones back to DisconnectReason values.
		send(map[string]any{"event": "disconnected", "reason": nil, "detail": string(reason)})
	}
	cb.OnTrackSubscribed = func(track *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
		if track.Kind() != webrtc.RTPCodecTypeAudio {
			return
		}
		identity := rp.Identity()
		a.mu.Lock()
		a.tracks[identity] = track
		a.mu.Unlock()
		go a.drain(identity, track)
	}
	return cb
}

// drain reads a subscribed audio track for as long as it lives (unread RTP would back up),
// handing payloads to a waiting tap.
func (a *adapter) drain(identity string, track *webrtc.TrackRemote) {
	for {
		pkt, _, err := track.ReadRTP()
		if err != nil {
			return
		}
		a.mu.Lock()
		tap := a.taps[identity]
		a.mu.Unlock()
		if tap == nil || len(pkt.Payload) == 0 {
			continue
		}
		tap.mu.Lock()
		if tap.first.IsZero() {
			tap.first = time.Now()
		}
		if time.Since(tap.first) <= tap.until {
			tap.payloads = append(tap.payloads, append([]byte(nil), pkt.Payload...))
		} else {
			select {
			case <-tap.done:
			default:
				close(tap.done)
			}
		}
		tap.mu.Unlock()
	}
}

func (a *adapter) needRoom() (*lksdk.Room, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.room == nil {
		return nil, errors.New("not connected")
	}
	return a.room, nil
}

type args map[string]any

func (m args) str(key string) string {
	v, _ := m[key].(string)
	return v
}

func (m args) num(key string) float64 {
	v, _ := m[key].(float64)
	return v
}

func (m args) boolean(key string) bool {
	v, _ := m[key].(bool)
	return v
}

func (m args) strs(key string) []string {
	raw, _ := m[key].([]any)
	var out []string
	for _, v := range raw {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (m args) strMap(key string) map[string]string {
	raw, _ := m[key].(map[string]any)
	out := map[string]string{}
	for k, v := range raw {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

func (m args) bytes(key string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(m.str(key))
}

func (a *adapter) handle(op string, m args) (any, error) {
	switch op {
	case "connect":
		opts := []lksdk.ConnectOption{lksdk.WithAutoSubscribe(true)}
		if single, ok := m["single_pc"].(bool); ok && single {
			opts = append(opts, lksdk.WithSinglePeerConnection())
		}
		room, err := lksdk.ConnectToRoomWithToken(m.str("url"), m.str("token"), a.callbacks(), opts...)
		if err != nil {
			return nil, &refusal{kind: "join_refused", message: err.Error(),
				extra: map[string]any{"status": joinStatus(err.Error())}}
		}
		a.mu.Lock()
		a.room = room
		a.mu.Unlock()
		a.setConnected(true)
		return nil, nil
	case "disconnect":
		a.mu.Lock()
		room, stop := a.room, a.toneStop
		a.toneStop = nil
		a.mu.Unlock()
		if stop != nil {
			close(stop)
		}
		if room != nil && room.ConnectionState() != lksdk.ConnectionStateDisconnected {
			room.Disconnect()
		}
		a.setConnected(false)
		return nil, nil
	case "local_sid":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		return room.LocalParticipant.SID(), nil
	case "remotes":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		list := []map[string]any{}
		for _, p := range room.GetRemoteParticipants() {
			tracks := map[string]bool{}
			for _, pub := range p.TrackPublications() {
				tracks[pub.SID()] = pub.IsMuted()
			}
			list = append(list, map[string]any{
				"identity": p.Identity(), "sid": p.SID(), "name": p.Name(),
				"metadata": p.Metadata(), "attributes": p.Attributes(), "kind": int(p.Kind()),
				"tracks": tracks,
			})
		}
		return list, nil
	case "room_metadata":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		return room.Metadata(), nil
	case "rtt_ms":
		return nil, unsupported("server-sdk-go has no public RTT accessor")
	case "simulate":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		kinds := map[string]lksdk.SimulateScenario{
			"signal_reconnect": lksdk.SimulateSignalReconnect,
			"node_failure":     lksdk.SimulateNodeFailure,
			"server_leave":     lksdk.SimulateServerLeave,
		}
		if m.str("kind") == "full_reconnect" {
			// The SDK's only full-reconnect simulation, SimulateLeaveRequestFullReconnect, asks
			// the server for it; livekit-server v1.13.5 ignores that SimulateScenario (no case
			// for LeaveRequestFullReconnect in pkg/rtc), so nothing would happen.
			return nil, unsupported("no client-side full-reconnect simulation in server-sdk-go " +
				"(SimulateLeaveRequestFullReconnect needs server support that v1.13.5 lacks)")
		}
		kind, ok := kinds[m.str("kind")]
		if !ok {
			return nil, unsupported("cannot simulate %s", m.str("kind"))
		}
		room.Simulate(kind)
		return nil, nil
	case "publish_data":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		payload, err := m.bytes("payload_b64")
		if err != nil {
			return nil, err
		}
		opts := []lksdk.DataPublishOption{lksdk.WithDataPublishReliable(m.boolean("reliable"))}
		if topic := m.str("topic"); topic != "" {
			opts = append(opts, lksdk.WithDataPublishTopic(topic))
		}
		if dest := m.strs("destinations"); len(dest) > 0 {
			opts = append(opts, lksdk.WithDataPublishDestination(dest))
		}
		return nil, room.LocalParticipant.PublishDataPacket(lksdk.UserData(payload), opts...)
	case "watch":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		topic := m.str("topic")
		if m.str("kind") == "text" {
			return nil, room.RegisterTextStreamHandler(topic, func(r *lksdk.TextStreamReader, identity string) {
				go func() {
					text := r.ReadAll()
					send(map[string]any{
						"event": "stream", "kind": "text", "topic": topic, "sender": identity,
						"payload_b64": base64.StdEncoding.EncodeToString([]byte(text)),
						"error":       nil, "attributes": r.Info.Attributes, "name": "",
					})
				}()
			})
		}
		return nil, room.RegisterByteStreamHandler(topic, func(r *lksdk.ByteStreamReader, identity string) {
			go func() {
				data := r.ReadAll()
				name := ""
				if r.Info.Name != nil {
					name = *r.Info.Name
				}
				send(map[string]any{
					"event": "stream", "kind": "bytes", "topic": topic, "sender": identity,
					"payload_b64": base64.StdEncoding.EncodeToString(data),
					"error":       nil, "attributes": r.Info.Attributes, "name": name,
				})
			}()
		})
	case "send_text":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		text := m.str("text")
		writer := room.LocalParticipant.StreamText(lksdk.StreamTextOptions{
			Topic:                 m.str("topic"),
			DestinationIdentities: m.strs("destinations"),
			Attributes:            m.strMap("attributes"),
			TotalSize:             uint64(len(text)),
		})
		return nil, writeAndClose(func(done *func()) { writer.Write(text, done) }, writer.Close)
	case "send_bytes":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		data, err := m.bytes("payload_b64")
		if err != nil {
			return nil, err
		}
		name := m.str("name")
		writer := room.LocalParticipant.StreamBytes(lksdk.StreamBytesOptions{
			Topic:     m.str("topic"),
			FileName:  &name,
			TotalSize: uint64(len(data)),
		})
		return nil, writeAndClose(func(done *func()) { writer.Write(data, done) }, writer.Close)
	case "perform_rpc":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		timeout := time.Duration(m.num("timeout_s") * float64(time.Second))
		result, err := room.LocalParticipant.PerformRpc(lksdk.PerformRpcParams{
			DestinationIdentity: m.str("destination"),
			Method:              m.str("method"),
			Payload:             m.str("payload"),
			ResponseTimeout:     &timeout,
		})
		var rpcErr *lksdk.RpcError
		if errors.As(err, &rpcErr) {
			data := ""
			if rpcErr.Data != nil {
				data = *rpcErr.Data
			}
			return nil, &refusal{kind: "rpc_error", message: rpcErr.Message,
				extra: map[string]any{"code": int(rpcErr.Code), "data": data}}
		}
		if err != nil {
			return nil, err
		}
		return *result, nil
	case "register_rpc":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		method, mode := m.str("method"), m.str("mode")
		code, message, data := int(m.num("code")), m.str("message"), m.str("data")
		delay := time.Duration(m.num("delay_s") * float64(time.Second))
		return nil, room.RegisterRpcMethod(method, func(inv lksdk.RpcInvocationData) (string, error) {
			send(map[string]any{"event": "rpc", "method": method, "caller": inv.CallerIdentity, "payload": inv.Payload})
			time.Sleep(delay)
			switch mode {
			case "rpc_error":
				var d *string
				if data != "" {
					d = &data
				}
				return "", lksdk.NewRpcError(lksdk.RpcErrorCode(code), message, d)
			case "throw":
				if message == "" {
					message = "handler failed"
				}
				return "", errors.New(message)
			}
			return inv.Payload, nil
		})
	case "set_metadata":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		room.LocalParticipant.SetMetadata(m.str("value"))
		return nil, nil
	case "set_name":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		room.LocalParticipant.SetName(m.str("value"))
		return nil, nil
	case "set_attributes":
		room, err := a.needRoom()
		if err != nil {
			return nil, err
		}
		room.LocalParticipant.SetAttributes(m.strMap("attributes"))
		return nil, nil
	case "publish_tone":
		return a.publishTone(m)
	case "set_tone_muted":
		a.mu.Lock()
		pub := a.tonePub
		a.mu.Unlock()
		if pub == nil {
			return nil, errors.New("no tone published")
		}
		pub.SetMuted(m.boolean("muted"))
		return nil, nil
	case "hear_tone":
		return a.hearTone(m)
	}
	return nil, unsupported("unknown operation %s", op)
}

// joinStatus recovers the HTTP status of a refused join from the SDK's error: after a failed
// join it asks /rtc/validate and names three statuses in the error it returns (engine.go
// validate: "unauthorized: ", "not found", "unavailable: "); any other status is not told.
func joinStatus(message string) any {
	switch {
	case strings.HasPrefix(message, "unauthorized: "):
		return 401
	case strings.HasPrefix(message, "not found"):
		return 404
	case strings.HasPrefix(message, "unavailable: "):
		return 503
	}
	return nil
}

// writeAndClose writes through a stream writer and closes it once the write is done (the
// SDK's writers queue; the trailer must follow the last chunk).
func writeAndClose(write func(done *func()), closeWriter func()) error {
	finished := make(chan struct{})
	done := func() {
		closeWriter()
		close(finished)
	}
	write(&done)
	select {
	case <-finished:
		return nil
	case <-time.After(60 * time.Second):
		return errors.New("stream write did not finish in 60 s")
	}
}

// publishTone publishes the runner's pre-encoded Opus packets (one second of the tone, 20 ms
// each) in a loop: server-sdk-go sends encoded samples and has no audio encoder of its own.
func (a *adapter) publishTone(m args) (any, error) {
	room, err := a.needRoom()
	if err != nil {
		return nil, err
	}
	var packets [][]byte
	for _, p := range m.strs("opus_b64") {
		b, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			return nil, err
		}
		packets = append(packets, b)
	}
	if len(packets) == 0 {
		return nil, errors.New("no Opus packets given")
	}
	track, err := lksdk.NewLocalSampleTrack(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
	})
	if err != nil {
		return nil, err
	}
	pub, err := room.LocalParticipant.PublishTrack(track, &lksdk.TrackPublicationOptions{
		Name: "tone", Source: livekit.TrackSource_MICROPHONE,
	})
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	a.mu.Lock()
	a.tonePub, a.toneStop = pub, stop
	a.mu.Unlock()
	go func() {
		ticker := time.NewTicker(opusFrame)
		defer ticker.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-ticker.C:
			}
			if err := track.WriteSample(media.Sample{Data: packets[i%len(packets)], Duration: opusFrame}, nil); err != nil {
				fmt.Fprintf(os.Stderr, "tone: %v\n", err)
			}
		}
	}()
	return pub.SID(), nil
}

// hearTone returns the Opus payloads of identity's audio for the asked seconds plus a margin,
// counted from the first packet; the runner decodes them (the SDK has no decoder).
func (a *adapter) hearTone(m args) (any, error) {
	identity := m.str("identity")
	seconds := time.Duration(m.num("seconds") * float64(time.Second))
	tap := &audioTap{until: seconds + hearMargin, done: make(chan struct{})}
	a.mu.Lock()
	a.taps[identity] = tap
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.taps, identity)
		a.mu.Unlock()
	}()
	select {
	case <-tap.done:
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("no audio from %s for %v", identity, tap.until)
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	encoded := make([]string, 0, len(tap.payloads))
	for _, p := range tap.payloads {
		encoded = append(encoded, base64.StdEncoding.EncodeToString(p))
	}
	return map[string]any{"opus_b64": encoded}, nil
}

func main() {
	a := newAdapter()
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	send(map[string]any{"event": "ready", "protocol": protocolVersion, "sdk": sdkName})
	var wg sync.WaitGroup
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 1 {
			var req map[string]any
			if jerr := json.Unmarshal(line, &req); jerr != nil {
				fmt.Fprintf(os.Stderr, "bad request line: %v\n", jerr)
			} else if op, _ := req["op"].(string); op == "exit" {
				break
			} else {
				wg.Add(1)
				go func(id any, op string, m args) {
					defer wg.Done()
					reply(id, op, m, a)
				}(req["id"], op, args(req))
			}
		}
		if err != nil {
			break
		}
	}
	// stdin closed or "exit": leave the room (bounded) and go.
	finished := make(chan struct{})
	go func() {
		_, _ = a.handle("disconnect", args{})
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
	}
}

func reply(id any, op string, m args, a *adapter) {
	defer func() {
		if r := recover(); r != nil {
			send(map[string]any{"id": id, "ok": false, "kind": "error", "message": fmt.Sprintf("panic: %v", r)})
		}
	}()
	value, err := a.handle(op, m)
	if err == nil {
		send(map[string]any{"id": id, "ok": true, "value": value})
		return
	}
	msg := map[string]any{"id": id, "ok": false, "kind": "error", "message": err.Error()}
	var r *refusal
	if errors.As(err, &r) {
		msg["kind"] = r.kind
		for k, v := range r.extra {
			msg[k] = v
		}
	}
	send(msg)
}
