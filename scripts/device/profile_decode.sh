. scripts/device/prelude.sh >/dev/null
for f in .devbin/*.gz; do gunzip -c "$f" > "${f%.gz}"; chmod +x "${f%.gz}"; done
for b in onepath_base onepath; do echo "== $b"; .devbin/$b --json bench decode --steps 24 > $OUT/$b.json 2>$OUT/$b.err; python3 -c "
import json,sys;d=json.load(open('$OUT/$b.json'));print('prefill',round(d['prefill']['tokens_per_s']),[ (c['batch'],round(c['tokens_per_s']),round(c['step_ms_p50'],2)) for c in d['decode']], d['batched_rows_equal_alone'])"; done
.devbin/onepath --json bench decode --steps 8 --batch 1,8,32 --profile > $OUT/profile.json 2>$OUT/profile.err
python3 -c "
import json;d=json.load(open('$OUT/profile.json'))
for p in d['profile']:
  print('batch',p['batch'],{k:round(v,3) for k,v in p['phases_ms'].items()})
  ops=p['ops_own_pass_ms']; tot=sum(v['gpu_ms'] for v in ops.values())
  print('  ops total',round(tot,3), {k:(round(v['dispatches']),round(v['gpu_ms'],3)) for k,v in sorted(ops.items(), key=lambda kv:-kv[1]['gpu_ms'])})
"
