import { registerStrategy } from '../strategy';
import { crepe } from './crepe';
import { magnitude } from './magnitude';
import { ria, riStrategy } from './ria';
import { sparsegpt } from './sparsegpt';
import { wanda } from './wanda';

/** Built-in strategies. A new strategy is one file in this folder and one line here. */
registerStrategy(magnitude);
registerStrategy(wanda);
registerStrategy(riStrategy);
registerStrategy(ria);
registerStrategy(crepe);
registerStrategy(sparsegpt);
