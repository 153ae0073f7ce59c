/**
 * The agent's ACS connection from the instance's own evidence: its log lines (logfmt, as the agent
 * writes since 1.6x; seelog before) and the kernel's socket table. The lines as the real agent 1.101.2
 * writes them are checked against it in test/integration/real-agent.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { acsEvents } from '../../src/agent/acs-evidence.js';
import { establishedConnections } from '../../src/proc-net.js';

describe('ACS evidence from the agent’s log', () => {
  it('reads connections and losses in logfmt and in the older seelog lines, with their times', () => {
    const text = [
      'level=info time=2026-12-07T04:50:01Z msg="Connected to ACS endpoint" containerInstanceARN="arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc"',
      'level=info time=2026-12-07T04:50:02Z msg="Waiting for any previous stops to complete" module=docker_task_engine.go',
      'level=warn time=2026-12-07T04:55:10Z msg="ACS WebSocket connection closed" containerInstanceARN="arn:…" error="unexpected EOF"',
      'level=error time=2026-12-07T04:55:11Z msg="Failed to connect to ACS" error="dial tcp 127.0.0.1:443: connect: connection refused"',
      'level=info time=2026-12-07T04:55:40Z msg="Disconnected from ACS"',
      '2019-06-10T21:21:40Z [INFO] Connected to ACS endpoint',
      'no time here: ACS: Unable to discover poll endpoint',
      'level=info time=2026-12-07T04:56:00Z msg="TCS Websocket connection closed for a valid reason"',
    ].join('\n');
    expect(acsEvents(text)).toEqual([
      { state: 'connected', at: '2026-12-07T04:50:01Z' },
      { state: 'disconnected', at: '2026-12-07T04:55:10Z' },
      { state: 'disconnected', at: '2026-12-07T04:55:11Z' },
      { state: 'disconnected', at: '2026-12-07T04:55:40Z' },
      { state: 'connected', at: '2019-06-10T21:21:40Z' },
      { state: 'disconnected' },
    ]);
  });
});

describe('ACS evidence from the kernel’s socket table', () => {
  // /proc/net/tcp and tcp6 as the kernel writes them: one established to 127.0.0.1:8443 (IPv4), one listening,
  // one established to [::ffff:10.0.0.5]:443 (IPv4-mapped), and one socket of another process.
  const TCP = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:C350 0100007F:20FB 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1',
    '   1: 0100007F:C9AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 100 0 0 10 0',
    '   2: 0100007F:C351 0100007F:01BB 01 00000000:00000000 00:00000000 00000000     0        0 9999 1 0000000000000000 20 4 30 10 -1',
  ].join('\n');
  const TCP6 = [
    '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0000000000000000FFFF00000A00000A:D431 0000000000000000FFFF00000500000A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 4244 1 0000000000000000 20 4 30 10 -1',
  ].join('\n');
  const mine = new Set(['socket:[4242]', 'socket:[4243]', 'socket:[4244]']);

  it('lists the process’s established connections only, with their remote address and port', () => {
    expect(establishedConnections(TCP, mine)).toEqual([{ remoteAddress: '127.0.0.1', remotePort: 8443, localPort: 50000 }]);
    expect(establishedConnections(TCP6, mine)).toEqual([{ remoteAddress: '10.0.0.5', remotePort: 443, localPort: 54321 }]);
    expect(establishedConnections(TCP, new Set())).toEqual([]);
  });
});
