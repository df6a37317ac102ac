set terminal pngcairo size 1000,700 noenhanced
set logscale xy 2
set grid
set key outside right
set format x '2^%L'
set format y '2^%L'
set datafile missing 'nan'
set output 'iomodel_words_bwd.png'
set title 'attention bwd: words moved vs fast memory M (dashed: the bound min(N^2d^2/M, N^2d/sqrt M), arrows: M = d^2)'
set xlabel 'M (words)'
set ylabel 'slow-memory words (one head)'
set arrow from 4096, graph 0 to 4096, graph 1 nohead dt 3 lc 1
set arrow from 16384, graph 0 to 16384, graph 1 nohead dt 3 lc 2
set arrow from 65536, graph 0 to 65536, graph 1 nohead dt 3 lc 3
set arrow from 262144, graph 0 to 262144, graph 1 nohead dt 3 lc 4
plot 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'naive' ? $5 : 1/0):6 w lp lc 1 pt 1 t 'naive d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'flash' ? $5 : 1/0):6 w lp lc 1 pt 7 t 'flash d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'blocksparse' ? $5 : 1/0):6 w lp lc 1 pt 9 t 'blocksparse d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'smallcache' ? $5 : 1/0):6 w lp lc 1 pt 5 t 'smallcache d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'flash' ? $5 : 1/0):7 w l dt 2 lc 1 t 'bound d=64', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'naive' ? $5 : 1/0):6 w lp lc 2 pt 1 t 'naive d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'flash' ? $5 : 1/0):6 w lp lc 2 pt 7 t 'flash d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'blocksparse' ? $5 : 1/0):6 w lp lc 2 pt 9 t 'blocksparse d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'smallcache' ? $5 : 1/0):6 w lp lc 2 pt 5 t 'smallcache d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'flash' ? $5 : 1/0):7 w l dt 2 lc 2 t 'bound d=128', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'naive' ? $5 : 1/0):6 w lp lc 3 pt 1 t 'naive d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'flash' ? $5 : 1/0):6 w lp lc 3 pt 7 t 'flash d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'blocksparse' ? $5 : 1/0):6 w lp lc 3 pt 9 t 'blocksparse d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'smallcache' ? $5 : 1/0):6 w lp lc 3 pt 5 t 'smallcache d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'flash' ? $5 : 1/0):7 w l dt 2 lc 3 t 'bound d=256', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'naive' ? $5 : 1/0):6 w lp lc 4 pt 1 t 'naive d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'flash' ? $5 : 1/0):6 w lp lc 4 pt 7 t 'flash d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'blocksparse' ? $5 : 1/0):6 w lp lc 4 pt 9 t 'blocksparse d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'smallcache' ? $5 : 1/0):6 w lp lc 4 pt 5 t 'smallcache d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'flash' ? $5 : 1/0):7 w l dt 2 lc 4 t 'bound d=512'
unset arrow
set output 'iomodel_ratio_bwd.png'
set title 'measured / bound against M/d^2: one curve per algorithm for every d; they cross near M = d^2'
set xlabel 'M / d^2'
set ylabel 'words / bound'
set format x '%g'
set arrow from 1, graph 0 to 1, graph 1 nohead dt 3
plot 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'naive' ? $8 : 1/0):9 w lp lc 1 pt 1 t 'naive d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'flash' ? $8 : 1/0):9 w lp lc 1 pt 7 t 'flash d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'blocksparse' ? $8 : 1/0):9 w lp lc 1 pt 9 t 'blocksparse d=64', 'iomodel_rows.dat' u ($4==64 && strcol(1) eq 'smallcache' ? $8 : 1/0):9 w lp lc 1 pt 5 t 'smallcache d=64', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'naive' ? $8 : 1/0):9 w lp lc 2 pt 1 t 'naive d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'flash' ? $8 : 1/0):9 w lp lc 2 pt 7 t 'flash d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'blocksparse' ? $8 : 1/0):9 w lp lc 2 pt 9 t 'blocksparse d=128', 'iomodel_rows.dat' u ($4==128 && strcol(1) eq 'smallcache' ? $8 : 1/0):9 w lp lc 2 pt 5 t 'smallcache d=128', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'naive' ? $8 : 1/0):9 w lp lc 3 pt 1 t 'naive d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'flash' ? $8 : 1/0):9 w lp lc 3 pt 7 t 'flash d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'blocksparse' ? $8 : 1/0):9 w lp lc 3 pt 9 t 'blocksparse d=256', 'iomodel_rows.dat' u ($4==256 && strcol(1) eq 'smallcache' ? $8 : 1/0):9 w lp lc 3 pt 5 t 'smallcache d=256', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'naive' ? $8 : 1/0):9 w lp lc 4 pt 1 t 'naive d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'flash' ? $8 : 1/0):9 w lp lc 4 pt 7 t 'flash d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'blocksparse' ? $8 : 1/0):9 w lp lc 4 pt 9 t 'blocksparse d=512', 'iomodel_rows.dat' u ($4==512 && strcol(1) eq 'smallcache' ? $8 : 1/0):9 w lp lc 4 pt 5 t 'smallcache d=512'
unset arrow
set output 'iomodel_nsweep_bwd.png'
set title 'N sweep at d=64, M=16384: every algorithm grows as N^2 (dashed)'
set xlabel 'N'
set ylabel 'words'
plot 'iomodel_nsweep.dat' u 1:2 w lp t 'flash', '' u 1:3 w lp t 'smallcache', '' u 1:4 w lp t 'naive', '' u 1:(3.07046e+06*($1/512.)**2) w l dt 2 t 'N^2 through flash at 512'
set output 'iomodel_density_bwd.png'
unset logscale
set format x '%g'
set format y '%.2e'
set title 'block-sparse (local+global+random, block 64) at N=4096, d=64, M=65536: words vs block density'
set xlabel 'density s'
set ylabel 'words'
set xrange [0:1]
set yrange [0:*]
plot 'iomodel_density.dat' u 1:2 w lp t 'blocksparse', '' u 1:3 w l dt 2 t 'flash (dense)'
