/**
 * The agent's ACS connection from the instance's own evidence: its log lines (logfmt, as the agent
 * writes since 1.6x; seelog before) and the kernel's socket table. The lines as the real agent 1.101.2
 * writes them are checked against it in test/integration/real-agent.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { acsEndpointOf, acsEvents, judgeAcs } from '../../src/agent/acs-evidence.js';
import { establishedConnections } from '../../src/proc-net.js';

describe('ACS evidence from the agent’s log', () => {
  it('reads connections and losses in logfmt and in the older seelog lines, with their times', () => {
    const text = [
      'level=info time=2026-12-07T04:50:01Z msg="Connected to ACS endpoint" containerInstanceARN="arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc"',
      'level=info time=2026-12-07T04:50:02Z msg="Waiting for any previous stops to complete" module=docker_task_engine.go',
      'level=warn time=2026-12-07T04:55:10Z msg="ACS WebSocket connection closed" containerInstanceARN=arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc error="unexpected EOF"',
      'level=error time=2026-12-07T04:55:11Z msg="Failed to connect to ACS" error="dial tcp 127.0.0.1:443: connect: connection refused"',
      'level=info time=2026-12-07T04:55:40Z msg="Disconnected from ACS"',
      '2019-06-10T21:21:40Z [INFO] Connected to ACS endpoint',
      'no time here: ACS: Unable to discover poll endpoint',
      'level=info time=2026-12-07T04:56:00Z msg="TCS Websocket connection closed for a valid reason"',
    ].join('\n');
    expect(acsEvents(text)).toEqual([
      { state: 'connected', at: '2026-12-07T04:50:01Z', arn: 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc' },
      { state: 'disconnected', at: '2026-12-07T04:55:10Z', arn: 'arn:aws:ecs:us-east-1:111122223333:container-instance/prod/abc' },
      { state: 'disconnected', at: '2026-12-07T04:55:11Z' },
      { state: 'disconnected', at: '2026-12-07T04:55:40Z' },
      { state: 'connected', at: '2019-06-10T21:21:40Z' },
      { state: 'disconnected' },
    ]);
  });
});

describe('the ACS endpoint the agent dialled, and the two sources as one word', () => {
  it('takes the endpoint from the ACS websocket’s URL, not the telemetry one’s, the latest last', () => {
    const text = [
      'level=info time=2026-12-07T06:20:39Z msg="Establishing a Websocket connection" url="https://ecs-a-1.us-east-1.amazonaws.com/ws?agentHash=13d0cb7d&clusterArn=prod&containerInstanceArn=arn%3Aaws%3Aecs&seqNum=1"',
      'level=info time=2026-12-07T06:20:40Z msg="Establishing a Websocket connection" url="https://ecs-t-1.us-east-1.amazonaws.com/ws?cluster=prod&containerInstance=arn%3Aaws%3Aecs"',
    ].join('\n');
    expect(acsEndpointOf(text)).toEqual({ host: 'ecs-a-1.us-east-1.amazonaws.com', port: 443 });
    expect(acsEndpointOf('msg="Establishing a Websocket connection" url="http://127.0.0.1:8123/ws?containerInstanceArn=x"')).toEqual({
      host: '127.0.0.1',
      port: 8123,
    });
    expect(acsEndpointOf('msg="Establishing a Websocket connection" url="https://ecs-t-1/ws?containerInstance=x"')).toBeUndefined();
    expect(acsEndpointOf('msg="Establishing a Websocket connection" url="::not a url"')).toBeUndefined();
  });

  it('connected only when the log says so and the kernel does not deny it; nothing from the log is unknown', () => {
    const up = { state: 'connected' as const, at: 't' };
    expect(judgeAcs(up, 'held').state).toBe('connected');
    expect(judgeAcs(up, 'unknown').state).toBe('connected');
    expect(judgeAcs(up, 'none')).toEqual({
      state: 'disconnected',
      why: 'the agent’s log says connected (t), but it holds no connection to the ACS endpoint',
    });
    expect(judgeAcs({ state: 'disconnected' }, 'held').state).toBe('disconnected');
    expect(judgeAcs(undefined, 'held').state).toBe('unknown');
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
