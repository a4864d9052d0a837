// Unit tests for `vipnat attach`: its arguments, and how it finds the namespace (a path, a name, a process, a container).
import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../../src/cli/args.js';
import { containerPid, resolveTarget, type Runner } from '../../src/cli/commands/attach.js';
import { UserError } from '../../src/gateway/errors.js';

/** A runner that answers as the engines named in `answers` would (missing ones are not installed), and records the calls. */
function engines(answers: Record<string, { status: number; stdout?: string; stderr?: string }>): Runner & { calls: string[] } {
  const calls: string[] = [];
  const run = ((cmd: string, args: string[]) => {
    calls.push(`${cmd} ${args.join(' ')}`);
    const a = answers[cmd];
    return a ? { status: a.status, stdout: a.stdout ?? '', stderr: a.stderr ?? '' } : null;
  }) as Runner & { calls: string[] };
  run.calls = calls;
  return run;
}

describe('vipnat attach: arguments', () => {
  it('takes one namespace, any number of routes and labels', () => {
    expect(
      parseArgs(['attach', '--container', 'web', '--route', '198.18.0.0/24', '--route', 'fd00:18::/64', '--label', 'role=db']),
    ).toMatchObject({
      command: 'attach',
      container: 'web',
      netns: undefined,
      pid: undefined,
      routes: ['198.18.0.0/24', 'fd00:18::/64'],
      labels: { role: 'db' },
      wait: false,
    });
    expect(parseArgs(['attach', '--pid', '4242', '--wait', '--id', '9'])).toMatchObject({ pid: 4242, wait: true, id: 9, routes: [] });
    expect(parseArgs(['attach', '--netns', '/var/run/docker/netns/abc'])).toMatchObject({ netns: '/var/run/docker/netns/abc' });
    expect(parseArgs(['detach', '3', '4'])).toMatchObject({ command: 'stop', ids: [3, 4] });
  });

  it('refuses no namespace, two of them, a bad route and a program', () => {
    const bad = (argv: string[], m: RegExp): void => {
      expect(() => parseArgs(argv)).toThrow(UsageError);
      expect(() => parseArgs(argv)).toThrow(m);
    };
    bad(['attach'], /give one of --netns PATH\|NAME, --pid PID or --container NAME/);
    bad(['attach', '--pid', '1', '--container', 'x'], /give one of/);
    bad(['attach', '--pid', '1', '--route', '198.18.0.0'], /--route "198.18.0.0": must be a CIDR/);
    bad(['attach', '--pid', '1', '--', 'sh'], /attach takes no PROGRAM/);
    bad(['detach'], /detach: give session ids/);
  });
});

describe('vipnat attach: finding the namespace', () => {
  const none = (): boolean => false;
  const all = (): boolean => true;

  it('a name is under /run/netns, a path is itself', () => {
    expect(resolveTarget({ netns: 'blue', pid: undefined, container: undefined }, engines({}), all)).toEqual({
      path: '/run/netns/blue',
      name: 'netns:blue',
    });
    expect(resolveTarget({ netns: '/var/run/docker/netns/abc', pid: undefined, container: undefined }, engines({}), all)).toEqual({
      path: '/var/run/docker/netns/abc',
      name: '/var/run/docker/netns/abc',
    });
    expect(() => resolveTarget({ netns: 'blue', pid: undefined, container: undefined }, engines({}), none)).toThrow(
      'no such network namespace (/run/netns/blue)',
    );
  });

  it('a process by its namespace file', () => {
    expect(resolveTarget({ netns: undefined, pid: 77, container: undefined }, engines({}), all)).toEqual({
      path: '/proc/77/ns/net',
      name: 'pid:77',
      pid: 77,
    });
    expect(() => resolveTarget({ netns: undefined, pid: 77, container: undefined }, engines({}), none)).toThrow(
      '--pid 77: no such process',
    );
  });

  it("a container by its engine's inspect: docker, else podman", () => {
    const docker = engines({ docker: { status: 0, stdout: '4321\n' } });
    expect(resolveTarget({ netns: undefined, pid: undefined, container: 'web' }, docker, all)).toEqual({
      path: '/proc/4321/ns/net',
      name: 'container:web',
      pid: 4321,
    });
    expect(docker.calls).toEqual(['docker inspect --format {{.State.Pid}} web']);
    const podman = engines({ podman: { status: 0, stdout: '99\n' } });
    expect(containerPid('web', podman)).toBe(99);
    expect(podman.calls).toEqual(['docker inspect --format {{.State.Pid}} web', 'podman inspect --format {{.State.Pid}} web']);
  });

  it('says why a container has no namespace to give', () => {
    const err = (run: Runner): string => {
      try {
        containerPid('web', run);
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(err(engines({ docker: { status: 0, stdout: '0\n' } }))).toBe('--container web: the container is not running');
    expect(err(engines({}))).toBe('--container web: neither docker nor podman is installed (use --pid or --netns)');
    expect(err(engines({ docker: { status: 1, stderr: 'Error: No such object: web\n' } }))).toBe(
      '--container web: no such container (docker: Error: No such object: web)',
    );
  });
});
