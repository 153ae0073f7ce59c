/**
 * The files in the state directory that more than one part of the program reads, named once, in a
 * module that imports nothing: `status` reads them all without loading the parts that write them.
 */
export const RUNTIME_STATE = 'runtime.json';
export const WATCH_STATE = 'watch.json';
export const SUPERVISOR_STATE = 'supervisor.json';
export const LIFECYCLE_STATE = 'lifecycle.json';
export const METRICS_STATE = 'metrics.json';
export const RUNSC_VERSION_STATE = 'runsc-version.json';
