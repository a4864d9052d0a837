// wrk as the bench runs it against the backend's nginx: its summary read back (requests/s, requests, errors).
export interface WrkSummary {
  rps: number | null;
  requests: number | null;
  errors: number;
}

export function parseWrk(out: string): WrkSummary {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in ([\d.]+)(m?s)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return { rps: rps ? Number(rps[1]) : null, requests: total ? Number(total[1]) : null, errors };
}

/** wrk's first line of complaint, or its exit status. */
export function wrkError(stderr: string, code: number | null): string {
  return (stderr.trim() || `wrk exit ${code}`).split('\n')[0]!;
}
