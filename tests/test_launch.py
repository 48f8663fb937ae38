"""The launch scripts: what they would run (--dry-run), and the TPU pod is
deleted even when a step fails."""
import os
import shlex
import subprocess

from _tiny import REPO

POD_ENV = dict(TPU_NAME='wt', ZONE='us-central2-b', ACCEL='v4-32',
               TFDS_DATA_DIR='gs://b/tfds', WORKDIR='gs://b/wt/resnet18')


def _run(script, *args, env=None):
  return subprocess.run(['bash', os.path.join(REPO, 'launch', script), *args],
                        cwd=REPO, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, **(env or {})), check=False)


def _commands(stdout):
  return [shlex.split(line) for line in stdout.splitlines() if line.strip()]


def test_tpu_pod_dry_run_prints_every_command_and_runs_none():
  out = _run('tpu_pod.sh', '--dry-run', 'configs/resnet18.py',
             '--config.seeds=0,1', env=dict(POD_ENV, PATH='/usr/bin:/bin'))
  assert out.returncode == 0, out.stderr
  cmds = _commands(out.stdout)
  gcloud = [c for c in cmds if c[0] == 'gcloud']
  assert [c[4] for c in gcloud] == ['create', 'scp', 'ssh', 'ssh', 'delete']
  assert gcloud[0][5] == 'wt' and '--accelerator-type=v4-32' in gcloud[0]
  for c in gcloud[1:4]:
    assert '--worker=all' in c
  install = next(a for a in gcloud[2] if a.startswith('--command='))
  assert "pip install -q -U 'jax[tpu]>=0.10,<0.12'" in install
  job = next(a for a in gcloud[3] if a.startswith('--command='))
  assert 'WT_JAX_DISTRIBUTED=1' in job
  assert 'python -m wt_jax.main --config=configs/resnet18.py' in job
  assert '--workdir=gs://b/wt/resnet18' in job and '0\\,1' in job
  assert gcloud[-1][-1] == '--quiet'  # the delete, last


def test_tpu_pod_is_deleted_when_a_step_fails(tmp_path):
  """A fake gcloud that fails the job: the EXIT trap still deletes."""
  log = tmp_path / 'calls'
  fake = tmp_path / 'bin' / 'gcloud'
  fake.parent.mkdir()
  fake.write_text('#!/usr/bin/env bash\necho "$@" >> ' + str(log) + '\n'
                  'case "$*" in *WT_JAX_DISTRIBUTED*) exit 7;; esac\n')
  fake.chmod(0o755)
  out = _run('tpu_pod.sh', 'configs/resnet18.py',
             env=dict(POD_ENV, PATH=f'{fake.parent}:/usr/bin:/bin'))
  assert out.returncode == 7, out.stderr
  calls = log.read_text().splitlines()
  assert calls[0].startswith('compute tpus tpu-vm create wt')
  assert calls[-1].startswith('compute tpus tpu-vm delete wt')


def test_multi_gpu_dry_run():
  out = _run('multi_gpu.sh', '--dry-run', 'configs/resnet18.py', '/tmp/w',
             '--config.seeds=0')
  assert out.returncode == 0, out.stderr
  cmds = _commands(out.stdout)
  assert cmds[-1] == ['python', '-m', 'wt_jax.main',
                      '--config=configs/resnet18.py', '--workdir=/tmp/w',
                      '--config.seeds=0']
